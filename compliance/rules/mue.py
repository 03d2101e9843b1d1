"""MUE_EXCEEDED: units of a code exceed its Medically Unlikely Edit value (CMS practitioner MUE
file in force on the date of service). Adjudication indicator 1: per claim line; 2 and 3:
summed over one patient, rendering NPI and date of service, earlier visits included
(EVENTS.md; MAC adjudication pages cited in ehr_ncci.md sec. 5.2). No row: no check."""

from __future__ import annotations

from collections import defaultdict

from compliance.findings import Finding, RuleId
from compliance.mue import Mue
from compliance.rules.context import Line, VisitContext, ids

REFERENCE = "CMS NCCI Medically Unlikely Edits (practitioner services)"


def check_mue(ctx: VisitContext) -> list[Finding]:
    table = ctx.rules.mue
    if not len(table):
        return []
    day = ctx.visit.date_of_service
    by_code: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.lines:
        if ln.billed:
            by_code[ln.line.cpt].append(ln)
    out = []
    for code in sorted(by_code):
        mue = table.on(code, day)
        if mue is None:
            continue
        lines = by_code[code]
        if mue.adjudication.per_day:
            earlier = sum(x.units for v in ctx.same_npi for x in v.lines if x.cpt == code)
            units = earlier + sum(ln.line.units for ln in lines)
            if units > mue.value:
                out.append(_finding(ctx, mue, lines, units, earlier))
        else:
            out.extend(
                _finding(ctx, mue, [ln], ln.line.units, 0)
                for ln in lines
                if ln.line.units > mue.value
            )
    return out


def _finding(ctx: VisitContext, mue: Mue, lines: list[Line], units: int, earlier: int) -> Finding:
    scope = "on one claim line" if not mue.adjudication.per_day else "on one date of service"
    return Finding(
        RuleId.MUE_EXCEEDED,
        f"{mue.code}: {units} units {scope} exceed the MUE of {mue.value}"
        + (f" ({earlier} on earlier visits of the day)" if earlier else "")
        + "; the claim line is denied.",
        f"{REFERENCE}, {mue.source} (MAI {int(mue.adjudication)}, {mue.rationale})",
        ids(lines),
        mue.code,
        expected={"mue": mue.value, "adjudication_indicator": int(mue.adjudication)},
        observed={"units": units, "units_earlier_same_day": earlier},
        # The whole claim line is denied, not only the excess units (Palmetto GBA, MUE page).
        amount_at_risk=ctx.lines_amount(lines),
    )
