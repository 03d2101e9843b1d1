"""KX accrual: the patient's therapy amount for a calendar year in one bucket (PT and SLP
together, OT alone), from the visits seen before the judged one with dates of service up to its
own, the totals folded from visits past the episode horizon, and the judged visit itself (CMS
Pub. 100-04, Ch. 5, sec. 10.3; EVENTS.md KX_MODIFIER_MISSING). Per patient, not per episode."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from compliance.kx_thresholds import KxBucket
from compliance.records import KxEntry, VisitRecord


@dataclass(frozen=True, slots=True)
class KxFold:
    """Accrual of visits dropped past the episode horizon, per (year, bucket)."""

    year: int
    bucket: str
    cents: int
    unknown_lines: int


class KxAccrual(msgspec.Struct, frozen=True):
    """Built per judged visit: a Struct costs a fraction of a frozen dataclass's __init__."""

    year: int
    bucket: KxBucket
    own: KxEntry
    before_cents: int
    #: Earlier visits' therapy lines of unknown amount: (visit_id, line ids), in date order.
    unknown_before: tuple[tuple[str, tuple[str, ...]], ...]
    #: Lines of unknown amount inside folded totals (their visits are no longer in the state).
    unknown_folded: int

    @property
    def total_cents(self) -> int:
        return self.before_cents + self.own.cents

    @property
    def unknown_lines(self) -> int:
        return (
            self.unknown_folded
            + sum(len(ids) for _, ids in self.unknown_before)
            + len(self.own.unknown)
        )


def own_entry(record: VisitRecord) -> KxEntry | None:
    """The judged visit's entry in its discipline's bucket (None: not a Part B therapy visit)."""
    if record.episode is None or not record.episode.kx:
        return None
    bucket = KxBucket.of(record.discipline).value
    for e in record.episode.kx:
        if e.bucket == bucket:
            return e
    return None


def accrue(
    own: VisitRecord, seen: Iterable[VisitRecord], folds: Iterable[KxFold]
) -> KxAccrual | None:
    entry = own_entry(own)
    if entry is None:
        return None
    year = own.date_of_service.year
    bucket = KxBucket.of(own.discipline)
    cents = 0
    unknown_folded = 0
    for f in folds:
        if f.year == year and f.bucket == bucket.value:
            cents += f.cents
            unknown_folded += f.unknown_lines
    unknown: list[tuple[tuple[object, ...], str, tuple[str, ...]]] = []
    for r in seen:
        if r.date_of_service.year != year or r.date_of_service > own.date_of_service:
            continue
        if r.episode is None:
            # Upgraded from format 1: payer and amounts were not recorded. Its billed lines of
            # the bucket may count; they are unknown, never guessed.
            if r.lines and KxBucket.of(r.discipline) is bucket:
                unknown.append(((r.date_of_service, r.seq), r.visit_id, _ids(r)))
            continue
        for e in r.episode.kx:
            if e.bucket == bucket.value:
                cents += e.cents
                if e.unknown:
                    unknown.append(((r.date_of_service, r.seq), r.visit_id, e.unknown))
    unknown.sort(key=lambda u: u[0])
    return KxAccrual(
        year, bucket, entry, cents, tuple((v, ids) for _, v, ids in unknown), unknown_folded
    )


def _ids(r: VisitRecord) -> tuple[str, ...]:
    return tuple(ln.line_id for ln in r.lines)


__all__ = ["KxAccrual", "KxFold", "accrue", "own_entry"]
