"""What a patient's history keeps (compliance/state.py), relative to the newest date of service N
among the visits' current versions:

- `horizon_days` (default 90): a record keeps its same-day part (rendering NPI, billed lines)
  for the claim-level rules of one date of service. Records without episode data (format 1)
  are dropped after it, as format 1 did.
- `episode_horizon_days` (default 400): a record keeps its episode part (flags, episode
  documents, KX amounts). 400 days cover the whole calendar year of N (at most 365 days back)
  plus a margin of the previous year for late arrivals, and a typical episode (weeks to months)
  whole. A visit older than this at arrival is "beyond the horizon": neither the episode nor
  the KX rules judge it.
- Older records are dropped. Their KX amounts are first folded into per-(year, bucket) totals
  (kept for N's year and the previous one), and `folded_through` remembers the newest date
  dropped (a visit before it is beyond the horizon). The exception: an episode still open
  (no discharge, no later initial evaluation) with a record inside the horizon keeps, stripped,
  the records it needs: its first record (and the discharge before it that opened it), records
  carrying evaluations, plan of care, certification or referral documents, and the current
  progress-report period (from the latest clinician report on); at most
  `MAX_KEPT_PAST_HORIZON` of them (the first record and documents first).

Size is therefore bounded by the visits of ~13 months plus at most 64 records (docs/rules.md
"State" has the measured figures).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from compliance.episodes.accrual import KxFold
from compliance.episodes.segments import Segment, by_group, segments
from compliance.records import INITIAL_EVALUATION, RE_EVALUATION, DocKind, Role, VisitRecord

#: Versions kept per visit (current + earlier ones still needed by a replay).
MAX_VERSIONS = 3
DEFAULT_HORIZON_DAYS = 90
DEFAULT_EPISODE_HORIZON_DAYS = 400
MAX_KEPT_PAST_HORIZON = 64
_ESSENTIAL_DOCS = frozenset({DocKind.PLAN_OF_CARE, DocKind.CERTIFICATION, DocKind.REFERRAL})
_REPORTS = frozenset({DocKind.PROGRESS_REPORT, DocKind.RE_EVALUATION, DocKind.DISCHARGE_SUMMARY})

Versions = tuple[VisitRecord, ...]


def prune(
    visits: Sequence[Versions],
    folds: Iterable[KxFold],
    folded_through: date | None,
    horizon_days: int,
    episode_horizon_days: int,
) -> tuple[list[Versions], tuple[KxFold, ...], date | None]:
    newest = max(vs[-1].date_of_service for vs in visits)
    line_cut = newest - timedelta(days=horizon_days)
    episode_cut = newest - timedelta(days=max(horizon_days, episode_horizon_days))
    kept: list[Versions] = []
    past: list[VisitRecord] = []
    for vs in visits:
        latest = vs[-1]
        dos = latest.date_of_service
        if latest.episode is None:
            if dos >= line_cut:
                kept.append(vs)
        elif dos < episode_cut:
            past.append(latest)
        elif len(vs) == 1:
            kept.append(vs if dos >= line_cut or not latest.lines else (latest.stripped(),))
        else:
            kept.append(tuple(v if v.date_of_service >= line_cut else v.stripped() for v in vs))
    totals = {(f.year, f.bucket): (f.cents, f.unknown_lines) for f in folds}
    if past:
        needed = _needed(past, [vs[-1] for vs in kept], episode_cut)
        for r in past:
            if r.visit_id in needed:
                kept.append((r.stripped(),))
                continue
            folded_through = (
                r.date_of_service
                if folded_through is None
                else max(folded_through, r.date_of_service)
            )
            assert r.episode is not None
            for e in r.episode.kx:
                cents, unknown = totals.get((r.date_of_service.year, e.bucket), (0, 0))
                totals[(r.date_of_service.year, e.bucket)] = (
                    cents + e.cents,
                    unknown + len(e.unknown),
                )
    first_year = newest.year - 1
    kept_folds = tuple(
        KxFold(y, b, c, u) for (y, b), (c, u) in sorted(totals.items()) if y >= first_year
    )
    return kept, kept_folds, folded_through


def _needed(past: list[VisitRecord], recent: list[VisitRecord], cut: date) -> set[str]:
    """Visit ids of past-horizon records that an open, active episode still needs."""
    out: set[str] = set()
    for key, records in by_group([*past, *recent]).items():
        segs = segments(records, key)
        last = segs[-1]
        if last.closed or last.records[-1].date_of_service < cut or last.first_day is None:
            continue  # closed, inactive, or its start unseen (not evaluated): nothing to keep
        essential, period = _needs(last)
        head = last.records[0].episode
        if last.opened and len(segs) > 1 and head is not None and not head.has(INITIAL_EVALUATION):
            essential.insert(0, segs[-2].records[-1])  # the discharge that opened it
        chosen: dict[str, None] = {}  # insertion-ordered set of visit ids
        for r in [*essential, *reversed(period)]:
            if r.date_of_service < cut:
                chosen.setdefault(r.visit_id)
        out.update(list(chosen)[:MAX_KEPT_PAST_HORIZON])
    return out


def _needs(segment: Segment) -> tuple[list[VisitRecord], list[VisitRecord]]:
    """(essential records: first, evaluations, plan/certification/referral documents, the
    latest period restart; records of the current progress-report period)."""
    records = segment.records
    essential = [records[0]]
    restart_at = -1
    for i, r in enumerate(records):
        ep = r.episode
        assert ep is not None
        if ep.has(RE_EVALUATION) or any(
            d.kind in _REPORTS and d.role is Role.CLINICIAN and d.signed for d in ep.docs
        ):
            restart_at = i
        if i and (ep.has(INITIAL_EVALUATION) or any(d.kind in _ESSENTIAL_DOCS for d in ep.docs)):
            essential.append(r)
    if restart_at >= 0:
        essential.append(records[restart_at])
        # A backdated report restarts the period at its date: keep the period from there.
        ep = records[restart_at].episode
        assert ep is not None
        since = min(
            [records[restart_at].date_of_service]
            + [d.day for d in ep.docs if d.kind in _REPORTS and d.role is Role.CLINICIAN]
        )
        period = [r for r in records if r.date_of_service > since]
    else:
        period = list(records)
    return essential, period


__all__ = [
    "DEFAULT_EPISODE_HORIZON_DAYS",
    "DEFAULT_HORIZON_DAYS",
    "MAX_KEPT_PAST_HORIZON",
    "MAX_VERSIONS",
    "prune",
]
