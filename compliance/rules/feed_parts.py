"""CHARGES_NOT_RECEIVED and DOCUMENTATION_NOT_RECEIVED (warning; EVENTS.md "Other additive rule
ids"): a visit assembled from EHR feeds had only one of its two parts when the join's wait
expired (the visit's `parts_missing`, docs/integration-hl7.md "The join").

One finding says what is missing instead of its consequences: without the documentation every
billed timed line lacks minutes and the note's totals are absent, which the documentation rules
would each report again; those rules are left out for such a visit (`DOCUMENTATION_DEPENDENT`).
Without the charges the visit has no service lines and placeholder payer and NPI: nothing billed
can be judged, so only this finding is raised about billing.
"""

from __future__ import annotations

from compliance.findings import Finding, RuleId
from compliance.rules.context import VisitContext

REFERENCE = (
    "therapy-compliance EHR join: the visit's other half did not arrive within TC_JOIN_WAIT_S"
)

#: Rules whose findings a visit without documentation would raise only because the note did not
#: arrive: its minutes, totals and signed reports come from the documentation part.
DOCUMENTATION_DEPENDENT = frozenset(
    {
        RuleId.TIMED_MINUTES_MISSING,
        RuleId.TOTAL_TIMED_MINUTES_MISMATCH,
        RuleId.TREATMENT_TIME_INCONSISTENT,
        RuleId.WRITTEN_REPORT_MISSING,
        RuleId.TIMED_UNITS_EXCEED_MINUTES,
        RuleId.TIMED_UNITS_BELOW_MINUTES,
        RuleId.TIMED_UNITS_MISALLOCATED,
    }
)


def check_parts_received(ctx: VisitContext) -> list[Finding]:
    missing = ctx.visit.parts_missing or []
    out = []
    if "charges" in missing:
        out.append(
            Finding(
                RuleId.CHARGES_NOT_RECEIVED,
                "Documentation for this visit arrived but no charges did: nothing is billed for a "
                "documented visit yet (or the charge feed lost it).",
                REFERENCE,
                (),
                None,
                expected={"parts": ["charges", "documentation"]},
                observed={"parts_missing": ["charges"]},
            )
        )
    if "documentation" in missing:
        out.append(
            Finding(
                RuleId.DOCUMENTATION_NOT_RECEIVED,
                "Charges for this visit arrived but no documentation did: the billed services "
                "have no minutes, totals or signed reports to support them.",
                REFERENCE,
                tuple(sorted(ln.id for ln in ctx.lines)),
                None,
                expected={"parts": ["charges", "documentation"]},
                observed={"parts_missing": ["documentation"]},
                amount_at_risk=ctx.lines_amount([ln for ln in ctx.lines if ln.billed]),
            )
        )
    return out


def without_consequences(ctx: VisitContext, findings: list[Finding]) -> list[Finding]:
    """Drop the documentation rules' findings on a visit whose documentation never arrived."""
    if "documentation" not in (ctx.visit.parts_missing or []):
        return findings
    return [f for f in findings if f.rule_id not in DOCUMENTATION_DEPENDENT]
