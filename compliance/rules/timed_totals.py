"""Documented totals: total timed minutes and total treatment time.

Medicare requires both in the treatment note, and "the billing and the total timed code
treatment minutes must be consistent": CMS Pub. 100-02, Ch. 15, sec. 220.3.
"""

from __future__ import annotations

from compliance.findings import CMS_DOCUMENTATION, CMS_UNITS, Finding, RuleId
from compliance.rules.context import VisitContext, ids


def check_total_timed_minutes(ctx: VisitContext) -> list[Finding]:
    visit = ctx.visit
    total = visit.total_timed_minutes
    ref = f"{CMS_DOCUMENTATION}; {CMS_UNITS}"
    if total is None:
        if not any(ln.billed for ln in ctx.timed):
            return []
        known = ctx.sum_timed_line_minutes() if ctx.all_timed_minutes_known else None
        return [
            Finding(
                RuleId.TOTAL_TIMED_MINUTES_MISMATCH,
                "Timed codes are billed but the note documents no total timed minutes.",
                ref,
                ids(ctx.timed),
                None,
                expected={"total_timed_minutes": known, "documented": True},
                observed={"total_timed_minutes": None},
            )
        ]
    if not ctx.all_timed_minutes_known:
        return []  # per-line minutes are voluntary (Pub. 100-02, Ch. 15, sec. 220.3)
    line_sum = ctx.sum_timed_line_minutes()
    # An unknown code may be timed (its minutes in the total) or not: the total must lie
    # between the known timed lines' sum and that sum plus the unknown lines' minutes (no
    # upper bound when an unknown line has no minutes).
    extra = (
        sum(ln.line.minutes or 0 for ln in ctx.unknown)
        if all(ln.line.minutes is not None for ln in ctx.unknown)
        else None
    )
    if ctx.unknown:
        upper = None if extra is None else line_sum + extra
        consistent = line_sum <= total and (upper is None or total <= upper)
        expected: dict[str, object] = {"total_timed_minutes_between": [line_sum, upper]}
    else:
        consistent = total == line_sum
        expected = {"total_timed_minutes": line_sum}
    if consistent:
        return []
    return [
        Finding(
            RuleId.TOTAL_TIMED_MINUTES_MISMATCH,
            f"The timed lines document {line_sum} minutes but the note's total timed minutes is {total}.",
            ref,
            ids(ctx.timed),
            None,
            expected=expected,
            observed={"total_timed_minutes": total, "sum_of_line_minutes": line_sum},
        )
    ]


def check_treatment_time(ctx: VisitContext) -> list[Finding]:
    visit = ctx.visit
    if not any(ln.billed for ln in ctx.lines):
        return []
    treatment = visit.total_treatment_minutes
    pooled = ctx.pooled_timed_minutes()
    timed = pooled[0] if pooled is not None else ctx.sum_timed_line_minutes()
    if treatment is None:
        return [
            Finding(
                RuleId.TREATMENT_TIME_INCONSISTENT,
                "Services are billed but the note documents no total treatment time.",
                CMS_DOCUMENTATION,
                (),
                None,
                expected={"total_treatment_minutes_at_least": timed, "documented": True},
                observed={"total_treatment_minutes": None, "total_timed_minutes": timed},
            )
        ]
    if treatment >= timed:
        return []
    return [
        Finding(
            RuleId.TREATMENT_TIME_INCONSISTENT,
            f"Total treatment time {treatment} min is less than the {timed} timed minutes it includes.",
            CMS_DOCUMENTATION,
            (),
            None,
            expected={"total_treatment_minutes_at_least": timed},
            observed={"total_treatment_minutes": treatment, "total_timed_minutes": timed},
        )
    ]
