"""What the episode rules read about one episode as of the judged visit's date of service: the
records it was judged with (seen before it, dates of service up to its own) and itself.

Computed per evaluation from the compact records (O(records of the episode)); nothing here is
stored, so late arrivals and corrections need no bookkeeping beyond the records themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from compliance.episodes.segments import Segment
from compliance.records import RE_EVALUATION, SERVICE, DocKind, DocRecord, Role

#: Documents that close a progress-report period when a clinician signs them: the progress
#: report, a re-evaluation, and the discharge note ("The discharge note shall be a Progress
#: Report written by a clinician", Pub. 100-02, Ch. 15, sec. 220.3 F).
REPORT_KINDS = frozenset(
    {DocKind.PROGRESS_REPORT, DocKind.RE_EVALUATION, DocKind.DISCHARGE_SUMMARY}
)


@dataclass(frozen=True, slots=True)
class EpisodeView:
    discipline: str
    first_day: date
    day: date  # the judged visit's date of service
    treatment_days: tuple[date, ...]  # sorted, from first_day through `day`
    clinician_reports: tuple[date, ...]  # sorted dates of reports that restart the period
    assistant_reports: tuple[DocRecord, ...]
    plans: tuple[DocRecord, ...]
    certifications: tuple[DocRecord, ...]
    referrals: tuple[DocRecord, ...]
    #: Signed certifications with a delay reason carried by later visits of the episode
    #: (episodes/judge.py): for CERTIFICATION_MISSING, those whose interval covers `day`.
    delayed_certifications: tuple[DocRecord, ...] = ()

    @classmethod
    def of(cls, segment: Segment, first_day: date, day: date) -> EpisodeView:
        treatment: set[date] = set()
        restarts: list[date] = []
        assistant: list[DocRecord] = []
        plans: list[DocRecord] = []
        certs: list[DocRecord] = []
        referrals: list[DocRecord] = []
        for r in segment.records:
            ep = r.episode
            assert ep is not None
            if ep.has(SERVICE) and first_day <= r.date_of_service <= day:
                treatment.add(r.date_of_service)
            if ep.has(RE_EVALUATION):
                restarts.append(r.date_of_service)
            for doc in ep.docs:
                if doc.kind in REPORT_KINDS and doc.signed is not None:
                    if doc.role is Role.CLINICIAN:
                        restarts.append(doc.day)
                    elif doc.role is Role.ASSISTANT and doc.kind is DocKind.PROGRESS_REPORT:
                        assistant.append(doc)
                elif doc.kind is DocKind.PLAN_OF_CARE:
                    plans.append(doc)
                elif doc.kind is DocKind.CERTIFICATION:
                    certs.append(doc)
                elif doc.kind is DocKind.REFERRAL:
                    referrals.append(doc)
        return cls(
            segment.records[-1].discipline,
            first_day,
            day,
            tuple(sorted(treatment)),
            tuple(sorted(restarts)),
            tuple(assistant),
            tuple(plans),
            tuple(certs),
            tuple(referrals),
        )

    # --- progress reports (Pub. 100-02, Ch. 15, sec. 220.3 D) ---------------------------------

    @property
    def period_start(self) -> date:
        """The current progress-report period's first day: the episode's first day, restarted
        the day after each clinician report dated before the judged date. A report dated on the
        judged date closes the period that contains it (the visit of its day is covered)."""
        start = self.first_day
        for r in self.clinician_reports:
            if r < self.day:
                start = max(start, r + timedelta(days=1))
        return start

    @property
    def reported_today(self) -> bool:
        return self.day in self.clinician_reports

    def treatment_day_in_period(self) -> int:
        """The judged date's position among the period's treatment days (1 = first)."""
        start = self.period_start
        return sum(1 for t in self.treatment_days if start <= t <= self.day)

    def assistant_reports_in_period(self) -> tuple[DocRecord, ...]:
        start = self.period_start
        return tuple(d for d in self.assistant_reports if start <= d.day <= self.day)


__all__ = ["REPORT_KINDS", "EpisodeView"]
