"""GP/GO/GN: every "always therapy" line carries the modifier of the discipline that furnished
it, PT -> GP, OT -> GO, SLP -> GN (CMS Pub. 100-04, Ch. 5, sec. 20.1). Which payers require
it is payer policy (`therapy_modifiers_required` in data/payer_policies.toml)."""

from __future__ import annotations

from compliance.findings import CMS_MODIFIERS, Finding, RuleId
from compliance.rules.context import VisitContext
from schemas.common import Discipline

DISCIPLINE_MODIFIER = {Discipline.PT: "GP", Discipline.OT: "GO", Discipline.SLP: "GN"}


def check_therapy_modifier(ctx: VisitContext) -> list[Finding]:
    if not ctx.policy.therapy_modifiers_required:
        return []
    required = DISCIPLINE_MODIFIER[ctx.visit.discipline]
    out = []
    for ln in ctx.lines:
        if ln.entry is None or not ln.entry.always_therapy or not ln.billed:
            continue
        if required in ln.line.modifiers:
            continue
        out.append(
            Finding(
                RuleId.THERAPY_MODIFIER_MISSING,
                f"{ln.line.cpt} on a {ctx.visit.discipline.value} visit lacks the {required} modifier.",
                CMS_MODIFIERS,
                (ln.id,),
                ln.line.cpt,
                expected={"modifier": required},
                observed={"modifiers": list(ln.line.modifiers)},
                amount_at_risk=ctx.line_amount(ln),
            )
        )
    return out
