"""Certification facts of an episode as of a date (CMS Pub. 100-02, Ch. 15, sec. 220.1.3).

"On file" on a date d (docs/rules.md "Episodes of care"):
- a certification without a verbal order counts from its signature date (`signed` <= d): a late
  signature is a delayed certification, which "should be accepted" (sec. 220.1.3 D);
- a documented verbal order counts from its date through `verbal_order_days` (14) calendar days
  after it, and after that only if its signature is dated within those days (sec. 220.1.3 B:
  "it must be followed within 14 days by a signature to be timely"; EVENTS.md).
Day counts are calendar days between dates, never hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from compliance.episode_policy import EpisodePolicy
from compliance.episodes.view import EpisodeView
from compliance.records import DocRecord


def on_file(cert: DocRecord, day: date, verbal_order_days: int) -> bool:
    if cert.verbal is not None:
        last_verbal_day = cert.verbal + timedelta(days=verbal_order_days)
        if cert.verbal <= day <= last_verbal_day:
            return True
        return (
            cert.signed is not None
            and cert.signed <= last_verbal_day
            and cert.signed <= day
            and cert.verbal <= day
        )
    return cert.signed is not None and cert.signed <= day


def certifications_on_file(view: EpisodeView, policy: EpisodePolicy) -> list[DocRecord]:
    days = policy.certification.verbal_order_days
    return [c for c in view.certifications if on_file(c, view.day, days)]


def referral_exception(view: EpisodeView, policy: EpisodePolicy) -> DocRecord | None:
    """CY 2025 PFS exception to the initial certification (from `effective_from`): a signed
    referral for the episode's discipline on file and the plan sent to the certifier within
    `plan_sent_within_days` of the episode's first day (the initial evaluation: "the initial
    treatment includes the evaluation", sec. 220.1.3 B). Returns the plan that was sent."""
    rule = policy.referral_exception
    if view.day < rule.effective_from:
        return None
    referred = any(
        r.signed is not None and r.signed <= view.day and r.discipline == view.discipline
        for r in view.referrals
    )
    if not referred:
        return None
    deadline = view.first_day + timedelta(days=rule.plan_sent_within_days)
    for plan in view.plans:
        if plan.sent is not None and plan.sent <= min(deadline, view.day):
            return plan
    return None


@dataclass(frozen=True, slots=True)
class Interval:
    start: date
    end: date


def certified_intervals(view: EpisodeView, policy: EpisodePolicy) -> list[Interval]:
    """The intervals certified on the judged date (sec. 220.1.3 C; EVENTS.md
    RECERTIFICATION_MISSING): per certification on file, from `covers_from` (else the certified
    plan's `plan_start`, else the episode's first day for its first certification and the
    certification's date for later ones) through `covers_through` (else the plan's `plan_end`),
    at most `max_interval_days` calendar days, the start included. When the initial certification is met
    by the CY 2025 referral exception, the plan's own duration is the first interval."""
    # "90 calendar days or less", the start included (sec. 220.1.3; EVENTS.md: never past the
    # interval's start + 89 days): the last date an interval can cover is start + (max - 1).
    cap = timedelta(days=policy.recertification.max_interval_days - 1)
    out: list[Interval] = []
    ordered = sorted(view.certifications, key=lambda c: _reference_day(c))
    first = ordered[0] if ordered else None
    for cert in certifications_on_file(view, policy):
        plan = _plan_for(view, _reference_day(cert))
        fallback = view.first_day if cert is first else _reference_day(cert)
        start = cert.covers_from or (plan.plan_start if plan else None) or fallback
        end = cert.covers_through or (plan.plan_end if plan else None) or start + cap
        out.append(Interval(start, min(end, start + cap)))
    if not out:
        sent = referral_exception(view, policy)
        if sent is not None:
            start = sent.plan_start or view.first_day
            end = sent.plan_end or start + cap
            out.append(Interval(start, min(end, start + cap)))
    return out


def delayed_covering(view: EpisodeView, policy: EpisodePolicy) -> list[DocRecord]:
    """Delayed certifications (signed, delay reason documented) that cover the judged date for
    CERTIFICATION_MISSING: those of the view's own visits (any date: "accepted regardless of its
    lateness", sec. 220.1.3 D), and those carried by later visits of the episode whose interval
    contains the judged date ("a certification with `delay_reason_documented` covers the
    earlier visits of its interval", EVENTS.md)."""
    out = [c for c in view.certifications if c.delayed_certification]
    out.extend(c for c in view.delayed_certifications if delayed_covers(c, view, policy))
    return out


def delayed_covers(cert: DocRecord, view: EpisodeView, policy: EpisodePolicy) -> bool:
    """Whether a delayed certification's interval contains the judged date: from `covers_from`
    (else the certified plan's `plan_start`, else the episode's first day) through
    `covers_through` (else the plan's `plan_end`), at most `max_interval_days` dates. Also a
    recertification's (sec. 220.1.3 D applies to certifications and recertifications alike:
    RECERTIFICATION_MISSING reads it too)."""
    cap = timedelta(days=policy.recertification.max_interval_days - 1)
    plan = _plan_for(view, _reference_day(cert))
    start = cert.covers_from or (plan.plan_start if plan else None) or view.first_day
    end = cert.covers_through or (plan.plan_end if plan else None) or start + cap
    return start <= view.day <= min(end, start + cap)


def _reference_day(cert: DocRecord) -> date:
    return cert.covers_from or cert.verbal or cert.signed or cert.day


def _plan_for(view: EpisodeView, day: date) -> DocRecord | None:
    """The plan a certification certifies: the latest plan of the episode dated on or before
    the certification's reference date, else the first plan."""
    if not view.plans:
        return None
    before = [p for p in view.plans if p.day <= day]
    return max(before, key=lambda p: p.day) if before else min(view.plans, key=lambda p: p.day)


__all__ = [
    "Interval",
    "certifications_on_file",
    "certified_intervals",
    "delayed_covering",
    "delayed_covers",
    "on_file",
    "referral_exception",
]
