"""Which of a patient's other visits an event can change the verdict of (EVENTS.md "VisitStatus
v1": "an event ... re-evaluates the cross-visit rules ... for the same patient's visits whose
verdict it can change, within the horizons"). Pure; docs/rules.md "Re-judgement" has the bounds.

A visit is judged with the visits before it in `segments.order` (date of service, then the seq
of the visit's first event), so an event of visit X at place p can change:
- DAY: visits of X's old and new date placed after X (same-day NCCI/MUE/evaluation/add-on
  family split), and those placed before X that bill an add-on code (the add-on rule reads the
  whole day: X may bill or drop its primary) - not every visit of the day, so a patient with
  hundreds of visits on one date costs one look at each per event, not a re-judgement of each;
- EPISODE: visits of X's old and new episode placed after X's earlier place; every visit of
  the episode when X carries (or carried) a delayed certification, which reaches back over its
  interval, or when X opens or closes an episode before other visits of it (it may cut such a
  reach);
- KX: visits of X's old and new (year, bucket) placed after X whose side of the threshold or of
  the KX share changes with X's amount: found from the accruals' running totals (one pass of
  additions over the bucket's records, no rule run), so the KX rule runs again only for them.
A new visit dated after every other visit (the usual event) and carrying no delayed
certification changes no one: answered without a look at the others. Only visits whose current
record can be judged again are returned (`VisitRecord.judgeable`:
within `horizon_days`, written since the status) and that have a status to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

from compliance.episodes.accrual import KxFold
from compliance.episodes.segments import group_key, order
from compliance.kx_thresholds import KxBucket
from compliance.records import INITIAL_EVALUATION, VisitRecord
from compliance.rules import Scope
from compliance.state import PatientHistory

#: (year, bucket, accrued cents) -> the KX rules' sides: (over the threshold, under the share);
#: None when the year has no threshold.
KxSides = Callable[[int, str, int], tuple[bool, bool] | None]


def affected(
    before: PatientHistory,
    after: PatientHistory,
    old: VisitRecord | None,
    new: VisitRecord,
    kx_sides: KxSides,
    bills_add_on: Callable[[VisitRecord], bool],
) -> dict[str, frozenset[Scope]]:
    """visit_id -> the scopes to judge again, for the other visits of `after` (the history with
    `new` applied; `old`: the visit's current version before it, None for a first event)."""
    if (
        old is None
        and (before.newest is None or new.date_of_service > before.newest)
        and not _carries_delayed_certification(new)
    ):
        # The usual event: a new visit dated after every other, reaching back with nothing.
        return {}
    others = [
        vs[-1]
        for vs in after.visits
        if vs[0].visit_id != new.visit_id and vs[-1].judgeable and vs[-1].status is not None
    ]
    if not others:
        return {}
    versions = [new] if old is None else [old, new]
    place = min(order(v) for v in versions)
    out: dict[str, set[Scope]] = {}

    def add(r: VisitRecord, scope: Scope) -> None:
        out.setdefault(r.visit_id, set()).add(scope)

    same_facts = old is not None and old.date_of_service == new.date_of_service
    if not (same_facts and old is not None and old.lines == new.lines and old.npi == new.npi):
        dates = {v.date_of_service for v in versions}
        for r in others:
            # After X: every day rule reads X. Before X: only the add-on rule does (its primary
            # may be X's), so only a visit billing an add-on code.
            if r.date_of_service in dates and (r.first > new.first or bills_add_on(r)):
                add(r, Scope.DAY)
    episodes = [v for v in versions if v.episode is not None]
    if episodes and not (
        same_facts
        and old is not None
        and old.episode == new.episode
        and old.discipline == new.discipline
    ):
        groups = {group_key(v) for v in episodes}
        in_groups = [r for r in others if r.episode is not None and group_key(r) in groups]
        reach_back = any(_carries_delayed_certification(v) for v in episodes) or (
            any(_bounds_an_episode(v) for v in episodes)
            and any(order(r) > place for r in in_groups)
        )
        for r in in_groups:
            if reach_back or order(r) > place:
                add(r, Scope.EPISODE)
    for visit_id in _kx_crossings(before, after, old, new, others, place, kx_sides):
        out.setdefault(visit_id, set()).add(Scope.KX)
    return {k: frozenset(v) for k, v in out.items()}


def _carries_delayed_certification(r: VisitRecord) -> bool:
    """A signed certification with its delay reason: it reaches the earlier visits of its
    interval (episodes/judge.py)."""
    ep = r.episode
    return ep is not None and any(d.delayed_certification for d in ep.docs)


def _bounds_an_episode(r: VisitRecord) -> bool:
    """An initial evaluation or a discharge: placed before other visits of its group, it moves
    an episode's boundary, which may cut a later certification's reach."""
    ep = r.episode
    assert ep is not None
    return ep.has(INITIAL_EVALUATION) or ep.discharged


def _entries(r: VisitRecord | None) -> dict[tuple[int, str], int]:
    if r is None or r.episode is None:
        return {}
    return {(r.date_of_service.year, e.bucket): e.cents for e in r.episode.kx}


def _kx_crossings(
    before: PatientHistory,
    after: PatientHistory,
    old: VisitRecord | None,
    new: VisitRecord,
    others: list[VisitRecord],
    place: tuple[date, int],
    kx_sides: KxSides,
) -> set[str]:
    was, now = _entries(old), _entries(new)
    if was == now and (old is None or order(old) == order(new)):
        return set()
    out: set[str] = set()
    for year, bucket in set(was) | set(now):
        later = [
            r
            for r in others
            if r.date_of_service.year == year
            and order(r) > place
            and bucket in _buckets(r)
            and KxBucket.of(r.discipline).value == bucket
        ]
        if not later:
            continue
        totals_before = _running(before, year, bucket)
        totals_after = _running(after, year, bucket)
        for r in later:
            a = kx_sides(year, bucket, totals_before.get(r.visit_id, 0))
            b = kx_sides(year, bucket, totals_after.get(r.visit_id, 0))
            if a != b:
                out.add(r.visit_id)
    return out


def _buckets(r: VisitRecord) -> set[str]:
    return {e.bucket for e in r.episode.kx} if r.episode is not None else set()


def _running(history: PatientHistory, year: int, bucket: str) -> dict[str, int]:
    """Each visit's accrual in (year, bucket), itself included, as the KX rule computes it
    (compliance/episodes/accrual.py): folded totals plus the visits before it in `order`."""
    total = _folded(history.kx_folds, year, bucket)
    records = sorted(
        (vs[-1] for vs in history.visits if vs[-1].date_of_service.year == year),
        key=order,
    )
    out = {}
    for r in records:
        if r.episode is None:
            continue
        for e in r.episode.kx:
            if e.bucket == bucket:
                total += e.cents
        out[r.visit_id] = total
    return out


def _folded(folds: Iterable[KxFold], year: int, bucket: str) -> int:
    return sum(f.cents for f in folds if f.year == year and f.bucket == bucket)


__all__ = ["KxSides", "affected"]
