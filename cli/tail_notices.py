"""`tail-notices`: the notice topic (`clinic.compliance.notice.v1`) as clinic staff read it.

A notice says what must be done, and by when, so that no alert is raised later (EVENTS.md
"ComplianceNotice v1"). The topic is append-only and at-least-once: a notice re-sent (a
re-delivery, a daily run's catch-up) carries the same `notice_id` and is printed once.
Everything here but `tail_notices` is pure (no broker): `NoticeTail.take` decides what one
record prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TextIO

from cli.tail_status import Output, follow, parse_record
from runtime.settings import Settings
from schemas.notice import ComplianceNotice, NoticeKind

#: The readable line's kind column: as wide as the longest kind.
_KIND_WIDTH = max(len(k.value) for k in NoticeKind)


def parse_kinds(values: Iterable[str]) -> frozenset[NoticeKind]:
    """`--kind` values (each a kind or a comma list of kinds, any case) as kinds; ValueError
    naming an unknown one and the known ones."""
    kinds: set[NoticeKind] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().upper()
            if not name:
                continue
            try:
                kinds.add(NoticeKind(name))
            except ValueError:
                known = ", ".join(k.value for k in NoticeKind)
                raise ValueError(
                    f"unknown notice kind {part.strip()!r} (one of: {known})"
                ) from None
    return frozenset(kinds)


def episode_of(notice: ComplianceNotice) -> str:
    """The episode as the clinic names it: the EHR's `episode_ref`, else the discipline and the
    episode's first day; the discipline alone for a notice per patient and year (KX)."""
    if notice.episode_ref is not None:
        return f"{notice.discipline.value} episode {notice.episode_ref}"
    if notice.episode_start is not None:
        return f"{notice.discipline.value} episode from {notice.episode_start}"
    return notice.discipline.value


def due_of(notice: ComplianceNotice) -> str:
    if notice.due_by is not None:
        return f"due {notice.due_by}"
    if notice.due_at_treatment_day is not None:
        return f"by treatment day {notice.due_at_treatment_day}"
    return "no due date"


def format_notice(notice: ComplianceNotice) -> str:
    """One readable line: as_of, kind, patient, episode, when it is due, the message."""
    return (
        f"{notice.as_of}  {notice.kind.value:<{_KIND_WIDTH}}  {notice.patient_ref}  "
        f"{episode_of(notice)}  {due_of(notice)}: {notice.message}"
    )


def parse_notice(raw: bytes) -> ComplianceNotice | str:
    """The record's `ComplianceNotice`, or why it is not one (never the record's values)."""
    return parse_record(raw, ComplianceNotice, "ComplianceNotice v1")


@dataclass(slots=True)
class NoticeTail:
    """What `tail-notices` prints, one record at a time, in topic order."""

    #: Only this patient (`--patient`).
    patient: str | None = None
    #: Only these kinds (`--kind`); empty: every kind.
    kinds: frozenset[NoticeKind] = frozenset()
    #: Only notices due within this many days of `today` (`--due-within`): `due_by` from today
    #: through today + days; for a kind without `due_by`, `as_of` within days of today.
    due_within: int | None = None
    #: The clinic's date (TC_EHR_PROFILE's time zone, else UTC) that `due_within` counts from.
    today: date | None = None
    #: Print the record's JSON as received instead of the readable line (`--json`).
    as_json: bool = False
    #: The notice ids seen, whether or not printed: a re-sent notice is printed once.
    seen: set[str] = field(default_factory=set)

    def take(self, raw: bytes | None, where: str) -> Output | None:
        """The line to print for one record's value, a warning for a bad one, or None: a
        tombstone, a notice already seen, or one the filters leave out. `where` names the
        record in a warning (partition and offset)."""
        if raw is None:
            return None
        notice = parse_notice(raw)
        if isinstance(notice, str):
            warning = f"therapy-compliance tail-notices: skipped the record at {where}: {notice}"
            return Output(warning, warning=True)
        if notice.notice_id in self.seen:
            return None
        self.seen.add(notice.notice_id)
        if not self.wanted(notice):
            return None
        if self.as_json:
            return Output(raw.decode("utf-8", "replace").rstrip("\n"))
        return Output(format_notice(notice))

    def wanted(self, notice: ComplianceNotice) -> bool:
        if self.patient is not None and notice.patient_ref != self.patient:
            return False
        if self.kinds and notice.kind not in self.kinds:
            return False
        if self.due_within is not None:
            today = self.today or date.today()
            window = timedelta(days=self.due_within)
            if notice.due_by is not None:
                return today <= notice.due_by <= today + window
            return abs(notice.as_of - today) <= window
        return True


async def tail_notices(
    settings: Settings,
    tail: NoticeTail,
    from_beginning: bool,
    limit: int | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Follow the notice topic, printing what `tail` decides; stop after `limit` lines."""
    return await follow(
        settings, settings.topic_notices, tail.take, from_beginning, limit, out, err
    )


__all__ = [
    "NoticeTail",
    "due_of",
    "episode_of",
    "format_notice",
    "parse_kinds",
    "parse_notice",
    "tail_notices",
]
