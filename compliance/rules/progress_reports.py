"""PROGRESS_REPORT_OVERDUE and PROGRESS_REPORT_BY_ASSISTANT (CMS Pub. 100-02, Ch. 15, sec.
220.3 D; EVENTS.md "v1 additions"), payers following Medicare.

"The minimum progress report period shall be at least once every 10 treatment days. The day
beginning the first reporting period is the first day of the episode of treatment regardless of
whether the service provided on that day is an evaluation, re-evaluation or treatment." The
period restarts the day after each progress report, re-evaluation or discharge note (sec.
220.3 F: "a Progress Report written by a clinician") signed by a clinician (PT, OT, SLP, MD,
DO, NP, PA); "reports written by assistants are not complete progress reports". A visit billed
on a treatment day after the 10th of its period, with no such report dated within the period
(a report dated on the visit's own date covers it), is overdue: one alert per late visit. When
the period holds only assistant-written reports, the visit also gets
PROGRESS_REPORT_BY_ASSISTANT.
"""

from __future__ import annotations

from compliance.findings import Finding, RuleId
from compliance.rules.context import VisitContext, ids


def check_progress_reports(ctx: VisitContext) -> list[Finding]:
    ep = ctx.episode
    if ep is None or ep.view is None or not ctx.policy.follows_medicare:
        return []
    billed = ctx.billed
    if not billed:
        return []  # nothing billed on this visit: nothing a missing report puts at risk
    view = ep.view
    policy = ctx.rules.episodes.progress_report
    if view.reported_today:
        return []
    day = view.treatment_day_in_period()
    if day <= policy.max_treatment_days:
        return []
    start = view.period_start
    last = [r for r in view.clinician_reports if r < view.day]
    out = [
        Finding(
            RuleId.PROGRESS_REPORT_OVERDUE,
            f"Treatment day {day} of the progress-report period that began {start}: a progress "
            f"report by the clinician was due by treatment day {policy.max_treatment_days} and "
            "none is dated within the period.",
            policy.source,
            ids(billed),
            None,
            expected={"due_by_treatment_day": policy.max_treatment_days},
            observed={
                "treatment_day": day,
                "period_start": start.isoformat(),
                "episode_first_day": view.first_day.isoformat(),
                "last_clinician_report": last[-1].isoformat() if last else None,
            },
            amount_at_risk=ctx.lines_amount(billed),
        )
    ]
    assistant = view.assistant_reports_in_period()
    if assistant:
        out.append(
            Finding(
                RuleId.PROGRESS_REPORT_BY_ASSISTANT,
                f"The period's only progress report{'s are' if len(assistant) > 1 else ' is'} "
                f"written by an assistant ({', '.join(sorted({d.credential or '?' for d in assistant}))}): "
                "not a complete progress report; the clinician must write one each period.",
                policy.source,
                ids(billed),
                None,
                expected={"author_credential": sorted(c.value for c in policy.clinicians)},
                observed={
                    "assistant_reports": [
                        {"date": d.day.isoformat(), "author_credential": d.credential}
                        for d in assistant
                    ],
                    "treatment_day": day,
                    "period_start": start.isoformat(),
                },
            )
        )
    return out
