"""CQ/CO assistant modifiers (CMS Pub. 100-04, Ch. 5, sec. 20.1; CMS "Billing Examples Using
CQ/CO Modifiers for Services Furnished In Whole or In Part by PTAs and OTAs").

ASSISTANT_MODIFIER_MISSING (payers following Medicare, dates of service from the policy's
effective date, 2020-01-01): a PT line furnished in whole by a PTA, or in part (the assistant's
separately furnished minutes exceed the de minimis 10% of the line's minutes), lacks CQ; an OT
line and an OTA likewise lack CO. ASSISTANT_MODIFIER_UNPAIRED (any payer): CQ without GP, or
CO without GO ("claims not so paired are returned")."""

from __future__ import annotations

from decimal import Decimal

from compliance.findings import CMS_ASSISTANTS, Finding, RuleId
from compliance.rules.context import VisitContext
from schemas.common import Credential, Discipline

#: Discipline -> (assistant credential, assistant modifier, therapy modifier it pairs with).
ASSISTANT = {
    Discipline.PT: (Credential.PTA, "CQ", "GP"),
    Discipline.OT: (Credential.OTA, "CO", "GO"),
}
PAIRS = (("CQ", "GP"), ("CO", "GO"))


def check_assistant_modifiers(ctx: VisitContext) -> list[Finding]:
    return _missing(ctx) + _unpaired(ctx)


def _missing(ctx: VisitContext) -> list[Finding]:
    policy = ctx.rules.policies.assistant_modifiers
    visit = ctx.visit
    role = ASSISTANT.get(visit.discipline)
    if role is None or not ctx.policy.follows_medicare:
        return []
    if visit.date_of_service < policy.effective_from:
        return []
    assistant, modifier, _ = role
    out = []
    for ln in ctx.lines:
        if not ln.billed or ln.entry is None or not ln.entry.always_therapy:
            continue
        if modifier in ln.line.modifiers:
            continue
        s = ln.line
        by = s.furnished_by if s.furnished_by is not None else visit.rendering_provider.credential
        whole = by is assistant
        part = (
            s.assistant_minutes is not None
            and s.minutes is not None
            and s.assistant_minutes * 100 > policy.de_minimis_percent * s.minutes
        )
        if not (whole or part):
            continue
        how = (
            f"furnished in whole by a {assistant.value}"
            if whole
            else f"{s.assistant_minutes} of its {s.minutes} minutes furnished by a "
            f"{assistant.value} (more than {policy.de_minimis_percent}%)"
        )
        out.append(
            Finding(
                RuleId.ASSISTANT_MODIFIER_MISSING,
                f"{s.cpt} is {how} and lacks the {modifier} modifier.",
                CMS_ASSISTANTS,
                (ln.id,),
                s.cpt,
                expected={"modifier": modifier, "de_minimis_percent": policy.de_minimis_percent},
                observed={
                    "modifiers": list(s.modifiers),
                    "furnished_by": by.value,
                    "minutes": s.minutes,
                    "assistant_minutes": s.assistant_minutes,
                },
                amount_at_risk=_differential(ctx, ctx.line_amount(ln)),
            )
        )
    return out


def _differential(ctx: VisitContext, amount: Decimal | None) -> Decimal | None:
    """The payment reduction an unmodified line escapes (recoupable): 15% from 2022-01-01."""
    policy = ctx.rules.policies.assistant_modifiers
    if amount is None or policy.payment_reduction_from is None:
        return None
    if ctx.visit.date_of_service < policy.payment_reduction_from:
        return Decimal(0)
    return amount * policy.payment_reduction_percent / 100


def _unpaired(ctx: VisitContext) -> list[Finding]:
    out = []
    for ln in ctx.lines:
        if not ln.billed:
            continue
        mods = ln.line.modifiers
        for assistant_mod, therapy_mod in PAIRS:
            if assistant_mod in mods and therapy_mod not in mods:
                out.append(
                    Finding(
                        RuleId.ASSISTANT_MODIFIER_UNPAIRED,
                        f"{ln.line.cpt} carries {assistant_mod} without {therapy_mod}; "
                        f"{assistant_mod} is reported with {therapy_mod} and an unpaired claim "
                        "is returned.",
                        CMS_ASSISTANTS,
                        (ln.id,),
                        ln.line.cpt,
                        expected={"with": therapy_mod},
                        observed={"modifiers": list(mods)},
                        amount_at_risk=ctx.line_amount(ln),
                    )
                )
    return out
