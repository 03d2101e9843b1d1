"""Where a visit stands in its episode and in the patient's KX accrual, judged with what was
seen before it (seq' < seq) that comes before it in `segments.order` (EVENTS.md "v1 additions";
docs/rules.md "Re-judgement")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

from compliance.episodes.accrual import KxAccrual, accrue
from compliance.episodes.segments import GroupKey, Segment, group_key, last_segment, order
from compliance.episodes.view import EpisodeView
from compliance.records import INITIAL_EVALUATION, DocRecord, VisitRecord
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
    #: The visit's episode as judged (its records up to the visit, the visit last): the
    #: visit's notices read it instead of segmenting the episode again (notices.at_visit).
    segment: Segment | None = None


def judge(
    own: VisitRecord,
    history: PatientHistory,
    seen: Sequence[VisitRecord],
    episode_horizon_days: int,
) -> EpisodeJudgement:
    """`seen`: the history's visits as they stood before the judged event (seen_before), or
    every other visit's current version (a re-judgement). The visit is judged with the visits
    before it in `order` (dated before it, or of its date and first seen before it) and, for
    its certification, with the delayed certifications of its episode reported later
    (`_delayed_certifications`)."""
    day = own.date_of_service
    newest = history.newest
    if (newest is not None and day < newest - timedelta(days=episode_horizon_days)) or (
        history.folded_through is not None and day < history.folded_through
    ):
        return EpisodeJudgement(EpisodeStatus.BEYOND_HORIZON)
    place = order(own)
    upto = []
    later = []
    for r in seen:
        if r.date_of_service < day or (r.date_of_service == day and r.first < place[1]):
            upto.append(r)
        elif r.episode is not None:
            later.append(r)
    kx = accrue(own, upto, history.kx_folds)
    if own.episode is None:
        return EpisodeJudgement(EpisodeStatus.START_UNSEEN, None, kx)
    key = group_key(own)
    records = [r for r in upto if r.episode is not None and group_key(r) == key]
    records.sort(key=order)
    records.append(own)  # own is last: the latest of its date in `order`
    segment = last_segment(records, key)
    first_day = segment.first_day
    if first_day is None:
        return EpisodeJudgement(EpisodeStatus.START_UNSEEN, None, kx, segment)
    view = EpisodeView.of(segment, first_day, day)
    if later:
        delayed = _delayed_certifications(own, [r for r in later if group_key(r) == key], key)
        if delayed:
            view = replace(view, delayed_certifications=delayed)
    return EpisodeJudgement(EpisodeStatus.EVALUATED, view, kx, segment)


def _delayed_certifications(
    own: VisitRecord, later: list[VisitRecord], key: GroupKey
) -> tuple[DocRecord, ...]:
    """Signed certifications with a documented delay reason that visits of the episode after
    `own` carry (the certification rule takes those whose interval covers `own`'s date,
    certs.delayed_covering): "documents reported later still count
    where the rule says so (a certification with `delay_reason_documented` covers the earlier
    visits of its interval)" (EVENTS.md; Pub. 100-02, Ch. 15, sec. 220.1.3 D). The episode
    continues after `own` until an initial evaluation or the visit after a discharge (an
    EHR-named episode: every record of it)."""
    later.sort(key=order)
    out: list[DocRecord] = []
    closed = own.episode is not None and own.episode.discharged and key[0] == "d"
    for r in later:
        ep = r.episode
        assert ep is not None
        if key[0] == "d" and (closed or ep.has(INITIAL_EVALUATION)):
            break
        out.extend(doc for doc in ep.docs if doc.delayed_certification)
        closed = ep.discharged
    return tuple(out)


__all__ = ["EpisodeJudgement", "EpisodeStatus", "judge"]
