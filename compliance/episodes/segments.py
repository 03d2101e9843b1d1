"""Episode identity (EVENTS.md "v1 additions"): which records form one episode of care.

An episode is one plan of care for one discipline. With `episode_ref` the EHR names it: every
record carrying that ref is the episode (never split). Without it the episode is (patient,
discipline), split in (date of service, seq) order: a record with an initial evaluation code of
the discipline opens a new episode, and so does the first record after a record carrying a
`discharge_summary`. Within one date, records are in the order their visits first arrived
(`VisitRecord.first`): a visit is judged with the visits of its date that arrived before it.

An episode's start is *seen* when its first record is an initial evaluation or follows a seen
discharge (the boundary was observed), or when a record gives `episode_start_date`; otherwise
the rules that need the start are not evaluated for it (never guessed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from compliance.records import INITIAL_EVALUATION, DocKind, VisitRecord

#: ("r", episode_ref) for EHR-named episodes, ("d", discipline) for implicit ones.
GroupKey = tuple[str, str]


def group_key(r: VisitRecord) -> GroupKey:
    ep = r.episode
    assert ep is not None
    return ("r", ep.episode_ref) if ep.episode_ref is not None else ("d", r.discipline)


def order(r: VisitRecord) -> tuple[date, int]:
    """A patient's visits in one order for every rule: by date of service, then by the seq of
    the visit's first event (a correction keeps its visit's place: docs/rules.md
    "Re-judgement")."""
    return (r.date_of_service, r.first)


@dataclass(frozen=True, slots=True)
class Segment:
    """One episode's records in (date, seq) order."""

    records: tuple[VisitRecord, ...]
    #: The boundary before the first record was observed (initial evaluation or discharge).
    opened: bool

    @property
    def closed(self) -> bool:
        """A record of it carries a discharge_summary (implicit episodes: its last record). One
        flat pass over the documents: most records carry none (hot in the notices' judgement)."""
        discharge = DocKind.DISCHARGE_SUMMARY
        return any(
            d.kind is discharge
            for r in self.records
            if r.episode is not None
            for d in r.episode.docs
        )

    @property
    def first_day(self) -> date | None:
        """The episode's first day: the latest `episode_start_date` given by its records (the
        EHR knows best), else the first record's date when the start was seen, else None."""
        given = [r.episode.start for r in self.records if r.episode and r.episode.start]
        if given:
            return given[-1]
        return self.records[0].date_of_service if self.opened else None


def segments(records: Sequence[VisitRecord], key: GroupKey) -> list[Segment]:
    """The episodes of one group; `records` in (date, seq) order, all of the group."""
    if not records:
        return []
    if key[0] == "r":
        first = records[0].episode
        return [Segment(tuple(records), first is not None and first.has(INITIAL_EVALUATION))]
    out: list[Segment] = []
    current: list[VisitRecord] = []
    opened = closed = False
    for r in records:
        ep = r.episode
        assert ep is not None
        initial = ep.has(INITIAL_EVALUATION)
        if current and (initial or closed):
            out.append(Segment(tuple(current), opened))
            current, opened, closed = [], True, False
        elif not current:
            opened = initial
        current.append(r)
        closed = closed or ep.discharged
    out.append(Segment(tuple(current), opened))
    return out


def last_segment(records: Sequence[VisitRecord], key: GroupKey) -> Segment:
    """`segments(records, key)[-1]`, found walking back from the end: O(its length)."""
    if key[0] == "r":
        return segments(records, key)[-1]
    start = 0
    for i in range(len(records) - 1, -1, -1):
        ep = records[i].episode
        assert ep is not None
        if ep.has(INITIAL_EVALUATION):
            start = i
            break
        prev = records[i - 1].episode if i else None
        if prev is not None and prev.discharged:
            start = i
            break
    tail = tuple(records[start:])
    head = tail[0].episode
    assert head is not None
    return Segment(tail, start > 0 or head.has(INITIAL_EVALUATION))


def by_group(records: Iterable[VisitRecord]) -> dict[GroupKey, list[VisitRecord]]:
    """Records with episode data, grouped and each group in (date, seq) order."""
    groups: dict[GroupKey, list[VisitRecord]] = {}
    for r in records:
        if r.episode is not None:
            groups.setdefault(group_key(r), []).append(r)
    for rs in groups.values():
        rs.sort(key=order)
    return groups


__all__ = ["GroupKey", "Segment", "by_group", "group_key", "last_segment", "order", "segments"]
