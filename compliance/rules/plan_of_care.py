"""PLAN_OF_CARE_MISSING (CMS Pub. 100-02, Ch. 15, sec. 220.1.2; 42 CFR 410.61(b): the plan "is
established before treatment is begun"; EVENTS.md "v1 additions").

A billed treatment visit (no evaluation or re-evaluation code on it) with no signed
`plan_of_care` of its episode dated on or before its date of service. The evaluation visit is
exempt: the clinician who establishes the plan may treat at that visit before it is written
(sec. 220.1.2). Payer scope: `plan_of_care_required` (payer_policies.toml; all payers by
default, as the contract's table scopes it to none).
"""

from __future__ import annotations

from compliance.findings import Finding, RuleId
from compliance.rules.context import VisitContext, ids


def check_plan_of_care(ctx: VisitContext) -> list[Finding]:
    ep = ctx.episode
    if ep is None or ep.view is None or not ctx.policy.plan_of_care_required:
        return []
    billed = ctx.billed
    if not billed or any(ln.entry is not None and ln.entry.evaluates for ln in ctx.lines):
        return []
    view = ep.view
    plans = [p for p in view.plans if p.day <= view.day]
    if any(p.signed is not None for p in plans):
        return []
    return [
        Finding(
            RuleId.PLAN_OF_CARE_MISSING,
            f"Treatment on {view.day} with no signed plan of care for this {view.discipline} "
            f"episode (first day {view.first_day}) dated on or before the date of service.",
            ctx.rules.episodes.plan_of_care.source,
            ids(billed),
            None,
            expected={"document": "plan_of_care", "signed": True},
            observed={
                "episode_first_day": view.first_day.isoformat(),
                "unsigned_plans": len(plans),
            },
            amount_at_risk=ctx.lines_amount(billed),
        )
    ]
