"""RENDERING_NPI_INVALID (error; EVENTS.md "Other additive rule ids"): the rendering provider's
NPI fails its check digit (Luhn over the prefix 80840 and the first nine digits; compliance/npi.py
cites CMS's specification). A claim naming such an NPI is rejected by the payer, so every billed
line is at risk; the alert names the NPI (a public provider identifier, not patient data) and
the check digit its first nine digits call for, which catches most keying errors.

Not raised:
- on a visit without billed lines: no claim goes out (as CODE_NOT_VALID_ON_DATE ignores unbilled
  lines);
- on a visit the EHR join emitted without its charges (`parts_missing` has "charges"): the
  rendering NPI comes from the charge (HL7 FT1-20, FHIR Claim/ChargeItem performer); without it
  the join fills in the documentation author's NPI or a placeholder (ehr/join.py), which no
  claim carries.
Only the rendering NPI is checked: it is the one NPI the v1 visit carries (documents name no
NPI; the EHR parsers read authors' NPIs only to look up their credentials).
"""

from __future__ import annotations

from compliance.findings import CMS_NPI, Finding, RuleId
from compliance.npi import npi_check_digit, npi_valid
from compliance.rules.context import VisitContext, ids


def check_rendering_npi(ctx: VisitContext) -> list[Finding]:
    npi = ctx.visit.rendering_provider.npi
    if npi_valid(npi) or "charges" in (ctx.visit.parts_missing or ()):
        return []
    billed = ctx.billed
    if not billed:
        return []
    # The schema guarantees ten ASCII digits, so the first nine have a check digit.
    expected = npi_check_digit(npi[:9])
    return [
        Finding(
            RuleId.RENDERING_NPI_INVALID,
            f"Rendering NPI {npi} fails the NPI check digit (Luhn with prefix 80840: its first "
            f"nine digits call for {expected}, not {npi[9]}); payers reject a claim with an "
            "invalid NPI. Correct the rendering provider's NPI in the charge (verify it in "
            "NPPES) before the claim is sent.",
            CMS_NPI,
            ids(billed),
            None,
            expected={"check_digit": expected},
            observed={"npi": npi, "check_digit": int(npi[9])},
            amount_at_risk=ctx.lines_amount(billed),
        )
    ]
