"""Code-set checks against the catalog: codes deleted or not yet in effect on the date of
service (CPT annual code changes, cited per code in the catalog's `source` column), codes the
catalog does not know, and service-based codes billed with more than one unit."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from compliance.catalog import UnitBasis
from compliance.findings import CMS_UNITS, Finding, RuleId
from compliance.rules.context import Line, VisitContext, ids

UNKNOWN_REFERENCE = "therapy-compliance CPT catalog (compliance/data/cpt_catalog.csv)"


def check_code_valid_on_date(ctx: VisitContext) -> list[Finding]:
    day = ctx.visit.date_of_service
    out = []
    for ln in ctx.lines:
        entry = ln.entry
        if entry is None or not ln.billed or entry.in_effect(day):
            continue
        if entry.effective_from is not None and day < entry.effective_from:
            what = f"{entry.code} is not in effect until {entry.effective_from}"
        else:
            what = f"{entry.code} was deleted after {entry.effective_to}"
        successors = ctx.catalog.replacements_on(entry.code, day)
        hint = f"; report {' or '.join(successors)} instead" if successors else ""
        out.append(
            Finding(
                RuleId.CODE_NOT_VALID_ON_DATE,
                f"{what} (date of service {day}){hint}.",
                f"CPT code set on the date of service: {entry.source}",
                (ln.id,),
                entry.code,
                expected={
                    "effective_from": _iso(entry.effective_from),
                    "effective_to": _iso(entry.effective_to),
                    "replacement_codes": successors,
                },
                observed={"cpt": entry.code, "date_of_service": day.isoformat()},
                amount_at_risk=ctx.line_amount(ln),
            )
        )
    return out


def check_unknown_code(ctx: VisitContext) -> list[Finding]:
    return [
        Finding(
            RuleId.UNKNOWN_CODE,
            f"{ln.line.cpt} is not in the therapy code catalog: this line was not checked "
            "(the visit's other lines were).",
            UNKNOWN_REFERENCE,
            (ln.id,),
            ln.line.cpt,
            expected={"in_catalog": True},
            observed={"cpt": ln.line.cpt, "units": ln.line.units},
        )
        for ln in ctx.unknown
    ]


def check_untimed_units(ctx: VisitContext) -> list[Finding]:
    by_code: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.lines:
        if ln.entry is not None and ln.entry.unit_basis is UnitBasis.SERVICE and ln.billed:
            by_code[ln.line.cpt].append(ln)
    out = []
    for code in sorted(by_code):
        units = sum(ln.line.units for ln in by_code[code])
        if units > 1:
            out.append(
                Finding(
                    RuleId.UNTIMED_CODE_MULTIPLE_UNITS,
                    f"{code} is a service-based (untimed) code billed with {units} units; it is "
                    "billed once whatever the time spent.",
                    f"{CMS_UNITS} (untimed codes)",
                    ids(by_code[code]),
                    code,
                    expected={"units": 1},
                    observed={"units": units},
                    amount_at_risk=_excess_amount(ctx, by_code[code], units - 1),
                )
            )
    return out


def _iso(value: object) -> str | None:
    return None if value is None else str(value)


def _excess_amount(ctx: VisitContext, lines: list[Line], excess: int) -> Decimal | None:
    """The excess units' share of the lines' amount."""
    total = ctx.lines_amount(lines)
    units = sum(ln.line.units for ln in lines)
    return None if total is None or units == 0 else total * excess / units
