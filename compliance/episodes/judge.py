"""Where a visit stands in its episode and in the patient's KX accrual, judged with what was
seen before it (seq' < seq) with dates of service up to its own (EVENTS.md "v1 additions")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from compliance.episodes.accrual import KxAccrual, accrue
from compliance.episodes.segments import group_key, last_segment, order
from compliance.episodes.view import EpisodeView
from compliance.records import VisitRecord
from compliance.state import PatientHistory


class EpisodeStatus(StrEnum):
    """Per evaluation, for a metric (Outcome.episode_status)."""

    #: The episode rules were evaluated.
    EVALUATED = "evaluated"
    #: The episode's start was never seen and no episode_start_date was given: the rules that
    #: need it were not evaluated (EVENTS.md: "counted in metrics, rather than guessed").
    START_UNSEEN = "start_unseen"
    #: The date of service is older than the episode horizon kept in the state (or than state
    #: already folded): neither the episode nor the KX rules were evaluated.
    BEYOND_HORIZON = "beyond_horizon"
    #: Evaluated without a patient history (stateless): no episode or KX rules.
    NO_HISTORY = "no_history"


@dataclass(frozen=True, slots=True)
class EpisodeJudgement:
    status: EpisodeStatus
    view: EpisodeView | None = None
    kx: KxAccrual | None = None


def judge(
    own: VisitRecord,
    history: PatientHistory,
    seen: Sequence[VisitRecord],
    episode_horizon_days: int,
) -> EpisodeJudgement:
    """`seen`: the history's visits as they stood before the judged event (seen_before)."""
    day = own.date_of_service
    newest = history.newest
    if (newest is not None and day < newest - timedelta(days=episode_horizon_days)) or (
        history.folded_through is not None and day < history.folded_through
    ):
        return EpisodeJudgement(EpisodeStatus.BEYOND_HORIZON)
    upto = [r for r in seen if r.date_of_service <= day]
    kx = accrue(own, upto, history.kx_folds)
    if own.episode is None:
        return EpisodeJudgement(EpisodeStatus.START_UNSEEN, None, kx)
    key = group_key(own)
    ref, discipline = own.episode.episode_ref, own.discipline
    records = [
        r
        for r in upto
        if r.episode is not None
        and r.episode.episode_ref == ref
        and (ref is not None or r.discipline == discipline)
    ]
    records.sort(key=order)
    records.append(own)  # own is last: the latest seq of its date
    segment = last_segment(records, key)
    first_day = segment.first_day
    if first_day is None:
        return EpisodeJudgement(EpisodeStatus.START_UNSEEN, None, kx)
    return EpisodeJudgement(EpisodeStatus.EVALUATED, EpisodeView.of(segment, first_day, day), kx)


__all__ = ["EpisodeJudgement", "EpisodeStatus", "judge"]
