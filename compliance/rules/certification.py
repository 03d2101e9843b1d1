"""CERTIFICATION_MISSING and RECERTIFICATION_MISSING (CMS Pub. 100-02, Ch. 15, sec. 220.1.3;
EVENTS.md "v1 additions"), payers following Medicare. What "on file" means and how intervals
are derived: compliance/episodes/certs.py.

CERTIFICATION_MISSING: the date of service is more than 30 days after the episode's first day
and no certification is on file; not raised when a signed certification documents the reason
for its delay (sec. 220.1.3 D: delayed certification is "deemed satisfied where, at any later
date, a physician/NPP makes a certification accompanied by a reason for the delay" - also one reported later, on a
visit of the episode, whose interval covers the date: EVENTS.md), nor, for
dates of service from 2025-01-01, when a signed referral for the discipline is on file and the
plan was sent to the certifier within 30 days of the evaluation (CY 2025 PFS).

RECERTIFICATION_MISSING: the date of service is after a certified interval and no
certification on file covers it (sec. 220.1.3 C: "Treatment beyond the duration certified by
the physician/NPP requires that a plan be recertified").
"""

from __future__ import annotations

from compliance.episodes.certs import (
    certifications_on_file,
    certified_intervals,
    delayed_covering,
    delayed_covers,
    referral_exception,
)
from compliance.findings import Finding, RuleId
from compliance.rules.context import VisitContext, ids


def check_certification(ctx: VisitContext) -> list[Finding]:
    ep = ctx.episode
    if ep is None or ep.view is None or not ctx.policy.follows_medicare:
        return []
    billed = ctx.billed
    if not billed:
        return []
    view = ep.view
    policy = ctx.rules.episodes
    out: list[Finding] = []
    days = (view.day - view.first_day).days
    within = policy.certification.within_days
    if (
        days > within
        and not certifications_on_file(view, policy)
        and not delayed_covering(view, policy)
        and referral_exception(view, policy) is None
    ):
        verbal = [c.verbal.isoformat() for c in view.certifications if c.verbal is not None]
        out.append(
            Finding(
                RuleId.CERTIFICATION_MISSING,
                f"Day {days} after the episode's first day ({view.first_day}) and no "
                "physician/NPP certification of the plan of care is on file (due within "
                f"{within} days).",
                policy.certification.source,
                ids(billed),
                None,
                expected={
                    "certified_within_days": within,
                    "verbal_order_signed_within_days": policy.certification.verbal_order_days,
                },
                observed={
                    "days_after_first_day": days,
                    "episode_first_day": view.first_day.isoformat(),
                    "certifications": len(view.certifications),
                    "unsigned_verbal_orders": verbal,
                    "referral_exception_from": policy.referral_exception.effective_from.isoformat(),
                },
                amount_at_risk=ctx.lines_amount(billed),
            )
        )
    intervals = certified_intervals(view, policy)
    # A (re)certification signed late with its reason, reported on this visit or on a later
    # one, covers the dates of its interval (sec. 220.1.3 D; EVENTS.md).
    covered = any(i.start <= view.day <= i.end for i in intervals) or any(
        delayed_covers(c, view, policy)
        for c in (*view.certifications, *view.delayed_certifications)
        if c.delayed_certification
    )
    ended = [i for i in intervals if i.end < view.day]
    if ended and not covered:
        through = max(i.end for i in ended)
        out.append(
            Finding(
                RuleId.RECERTIFICATION_MISSING,
                f"Treatment on {view.day} is after the certified interval (through {through}) "
                "and no recertification on file covers it.",
                policy.recertification.source,
                ids(billed),
                None,
                expected={
                    "certified_through": through.isoformat(),
                    "max_interval_days": policy.recertification.max_interval_days,
                },
                observed={
                    "days_after_certified_through": (view.day - through).days,
                    "intervals": [
                        [i.start.isoformat(), i.end.isoformat()]
                        for i in sorted(intervals, key=lambda i: (i.start, i.end))[-5:]
                    ],
                },
                amount_at_risk=ctx.lines_amount(billed),
            )
        )
    return out
