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
    if not ctx.all_timed_minutes_known or ctx.unknown:
        return []  # per-line minutes are voluntary; an unknown code may own some minutes
    line_sum = ctx.sum_timed_line_minutes()
    if line_sum == total:
        return []
    return [
        Finding(
            RuleId.TOTAL_TIMED_MINUTES_MISMATCH,
            f"The timed lines document {line_sum} minutes but the note's total timed minutes is {total}.",
            ref,
            ids(ctx.timed),
            None,
            expected={"total_timed_minutes": line_sum},
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
