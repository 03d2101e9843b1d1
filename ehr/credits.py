"""Credits (DFT^P03 FT1-6 `CD`, HL7 v2.5.1 table 0017 "Credit") taken off a visit's charges.

A DFT of charges (`CG`) carries the visit's full charge set and replaces the earlier one; a DFT
of credits reverses units of it. Each credit line finds its charged line (docs/integration-hl7.md
"Credits"): FT1-31 (Transaction Reference Key) names the original's FT1-2 (Transaction ID) when
sent; otherwise the line with the same procedure code and the same modifiers (in any order), the
first such line, in charge order, that still has the credited units. Units are subtracted; a line
at 0 leaves the visit. Refused (the caller dead-letters the credit): no charges to credit, no
matching line, more units than the line has left, or a visit left with no charged units.
"""

from __future__ import annotations

from dataclasses import dataclass

from ehr.parts import ChargeLine, ChargePart, CreditLine, CreditPart
from ehr.rejection import Rejection, RejectReason


@dataclass(frozen=True, slots=True)
class CreditProblem:
    """Why a credit cannot apply; `detail` names codes and fields only (no patient data)."""

    reason: RejectReason
    detail: str


class CreditRefused(ValueError):
    """Raised by `ehr.join.add_part` for a credit that cannot apply; the state is unchanged."""

    def __init__(self, problem: CreditProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem

    def rejection(self, message_id: str | None) -> Rejection:
        return Rejection.one(self.problem.reason, self.problem.detail, message_id, segment="FT1")


def apply_credits(charges: ChargePart, credits: list[CreditPart]) -> ChargePart | CreditProblem:
    """The charges less the credits (applied in the order given: oldest first)."""
    units = [line.units for line in charges.lines]
    for credit in credits:
        for n, line in enumerate(credit.lines, start=1):
            # "FT1#n" names the FT1 in the sender's message (as the parser's problems do);
            # a part parsed before `position` existed numbers its own lines.
            found = _match(charges.lines, units, line, line.position or n)
            if isinstance(found, CreditProblem):
                return found
            units[found] -= line.units
    if sum(units) == 0:
        return CreditProblem(
            RejectReason.CREDIT_EMPTIES_VISIT,
            "the credits leave the visit with no charged units: send the visit's charges as a "
            "new DFT instead, or withdraw the visit",
        )
    kept = [
        line.model_copy(update={"units": left})
        for line, left in zip(charges.lines, units, strict=True)
        if left > 0 or line.units == 0  # a line credited to 0 is no longer billed
    ]
    return charges.model_copy(update={"lines": kept})


def _match(
    lines: list[ChargeLine], units: list[int], credit: CreditLine, n: int
) -> int | CreditProblem:
    if credit.reference is not None:
        found = [i for i, line in enumerate(lines) if line.transaction_id == credit.reference]
        if not found:
            return CreditProblem(
                RejectReason.CREDIT_UNMATCHED,
                f"FT1#{n}: FT1-31 names no charged line (FT1-2) of the visit",
            )
        if lines[found[0]].cpt != credit.cpt:
            return CreditProblem(
                RejectReason.CREDIT_UNMATCHED,
                f"FT1#{n}: FT1-31 names a line of code {lines[found[0]].cpt}, the credit is for "
                f"{credit.cpt}",
            )
        index = found[0]
    else:
        wanted = sorted(credit.modifiers)
        found = [
            i
            for i, line in enumerate(lines)
            if line.cpt == credit.cpt and sorted(line.modifiers) == wanted
        ]
        if not found:
            mods = "-".join(credit.modifiers) or "none"
            return CreditProblem(
                RejectReason.CREDIT_UNMATCHED,
                f"FT1#{n}: no charged line of the visit has code {credit.cpt} with modifiers "
                f"{mods} (FT1-25/FT1-26; or name the line in FT1-31)",
            )
        index = next((i for i in found if units[i] >= credit.units), found[0])
    if units[index] < credit.units:
        return CreditProblem(
            RejectReason.CREDIT_BELOW_ZERO,
            f"FT1#{n}: the credit of {credit.units} units of {credit.cpt} would take its line "
            f"below zero ({units[index]} units left)",
        )
    return index
