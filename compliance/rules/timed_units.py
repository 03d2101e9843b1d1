"""Timed code units against documented minutes.

CMS 8-minute rule: CMS Pub. 100-04, Ch. 5, sec. 20.2 (pooled total of the 15-minute timed
codes, split across codes). Per-line minutes are voluntary for Medicare, only the total is
required: CMS Pub. 100-02, Ch. 15, sec. 220.3. AMA/CPT midpoint rule: each service alone.
Add-on families (97129 "initial 15 minutes" + 97130 "each additional 15 minutes") are one
service for both rules; the family's units then go to the primary up to its per-day limit and
the rest to the add-on (CPT descriptors). Codes whose unit is not 15 minutes (97550 "initial
30 minutes") are judged alone by the CPT time rule under either payer rule. An unknown code
disables only its own line: the known lines are still checked (EVENTS.md "v1 additions").
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from compliance.catalog import Family
from compliance.findings import (
    AMA_TIME_RULE,
    CMS_DOCUMENTATION,
    CMS_UNITS,
    CPT_ADD_ON,
    Finding,
    RuleId,
)
from compliance.rules.context import Line, VisitContext, ids
from compliance.units import CmsSplit, cms_split, cms_total_units, service_units
from schemas.common import Severity, UnitRule

#: Alerts list at most this many allowed allocations (ties can allow millions); the count is
#: published beside the list.
MAX_LISTED_ALLOCATIONS = 20
LONG_UNIT_RULE = (
    "CPT time rule (unit attained past the midpoint of the code's own unit length); "
    "CMS Pub. 100-04, Ch. 5, sec. 20.2 pools 15-minute codes only"
)


def check_timed_units(ctx: VisitContext) -> list[Finding]:
    if not ctx.timed:
        return []
    findings = _minutes_missing(ctx)
    cms = ctx.policy.unit_rule is UnitRule.CMS_8_MINUTE
    if cms:
        findings.extend(_cms(ctx))
    alone = [ln for ln in ctx.timed if not (cms and ln.pooled)]
    findings.extend(_alone(ctx, alone, cms))
    return findings


def _minutes_missing(ctx: VisitContext) -> list[Finding]:
    cms = ctx.policy.unit_rule is UnitRule.CMS_8_MINUTE
    documented_total = ctx.visit.total_timed_minutes is not None
    out = []
    for ln in ctx.timed:
        if not ln.billed or ln.line.minutes is not None:
            continue
        severity = None
        amount = None
        if cms and ln.pooled:
            why = (
                "the split of units across codes cannot be verified; "
                "the visit's total timed minutes are still checked"
            )
            ref = f"{CMS_DOCUMENTATION}; {CMS_UNITS}"
            if documented_total:
                # Medicare requires only the total timed minutes (Pub. 100-02 Ch. 15 sec.
                # 220.3): nothing is wrong, the split just cannot be checked.
                severity = Severity.INFO
        else:
            why = "the units of this code cannot be verified"
            ref = AMA_TIME_RULE if not cms else LONG_UNIT_RULE
            amount = ctx.line_amount(ln)
        out.append(
            Finding(
                RuleId.TIMED_MINUTES_MISSING,
                f"{ln.line.cpt} billed with {ln.line.units} unit(s) and no documented minutes: {why}.",
                ref,
                (ln.id,),
                ln.line.cpt,
                expected={"minutes_documented": True, "unit_rule": ctx.policy.unit_rule.value},
                observed={"units": ln.line.units, "minutes": None},
                amount_at_risk=amount,
                severity_override=severity,
            )
        )
    return out


def _pool_minutes(ctx: VisitContext, pool: list[Line]) -> tuple[int | None, int, str] | None:
    """(lowest, highest, source) of the minutes the pooled lines own, or None if unknown.

    Outside the pool are long-unit timed lines (timed, not pooled) and unknown codes (timed or
    not: unknown). When every pooled line has minutes, their sum is the pool (EVENTS.md: the
    known timed lines' minutes). Otherwise, from the documented total: at most the total less
    the long-unit lines' minutes, at least the total less every outside line's minutes (None
    when an outside line has no minutes)."""
    total = ctx.visit.total_timed_minutes
    pool_known = all(ln.line.minutes is not None for ln in pool)
    long_unit = [ln for ln in ctx.timed if not ln.pooled]
    outside = [*long_unit, *ctx.unknown]
    if pool_known and (outside or total is None):
        s = sum(ln.line.minutes or 0 for ln in pool)
        return s, s, "sum_of_line_minutes"
    if total is None:
        return None
    if not outside:
        return total, total, "total_timed_minutes"
    high = max(0, total - sum(ln.line.minutes or 0 for ln in long_unit))
    low = (
        max(0, total - sum(ln.line.minutes or 0 for ln in outside))
        if all(ln.line.minutes is not None for ln in outside)
        else None
    )
    return low, high, "total_timed_minutes_less_other_lines"


def _cms(ctx: VisitContext) -> list[Finding]:
    pool = [ln for ln in ctx.timed if ln.pooled]
    if not pool:
        return []
    bounds = _pool_minutes(ctx, pool)
    if bounds is None:
        return []  # no total and a line without minutes: TOTAL_TIMED_MINUTES_MISMATCH reports it
    low, high, minutes_source = bounds
    billed = sum(ln.line.units for ln in pool)
    line_ids = ids(pool)
    most = cms_total_units(high)
    if billed > most:
        return [
            Finding(
                RuleId.TIMED_UNITS_EXCEED_MINUTES,
                f"{billed} timed units billed; {high} documented timed minutes support {most} "
                "under the CMS 8-minute rule.",
                CMS_UNITS,
                line_ids,
                None,
                {
                    "total_units": most,
                    "unit_rule": UnitRule.CMS_8_MINUTE.value,
                    "minutes_source": minutes_source,
                },
                {"total_units": billed, "total_timed_minutes": high},
                amount_at_risk=_cheapest_units(ctx, pool, billed - most),
            )
        ]
    least = cms_total_units(low) if low is not None else None
    if least is not None and billed < least:
        return [
            Finding(
                RuleId.TIMED_UNITS_BELOW_MINUTES,
                f"{billed} timed units billed; {low} documented timed minutes support {least} "
                "under the CMS 8-minute rule (possible lost revenue).",
                CMS_UNITS,
                line_ids,
                None,
                {
                    "total_units": least,
                    "unit_rule": UnitRule.CMS_8_MINUTE.value,
                    "minutes_source": minutes_source,
                },
                {"total_units": billed, "total_timed_minutes": low},
            )
        ]
    return _cms_split(ctx, pool, billed, line_ids)


def _cheapest_units(ctx: VisitContext, lines: list[Line], excess: int) -> Decimal | None:
    """Excess units valued at the lowest per-unit amount among the billed lines: which units
    a payer denies is not known, so the figure is the least that is at risk."""
    per_unit = []
    for ln in lines:
        if ln.billed:
            amount = ctx.units_amount(ln, 1)
            if amount is None:
                return None
            per_unit.append(amount)
    return min(per_unit) * excess if per_unit else None


def _cms_split(
    ctx: VisitContext, pool: list[Line], billed: int, line_ids: tuple[str, ...]
) -> list[Finding]:
    if not all(ln.line.minutes is not None for ln in pool):
        return []  # the split is checked only where per-line minutes exist (Pub. 100-02 220.3)
    minutes_by_service: dict[str, int] = defaultdict(int)
    units_by_service: dict[str, int] = defaultdict(int)
    units_by_code: dict[str, int] = defaultdict(int)
    minutes_by_code: dict[str, int] = defaultdict(int)
    for ln in pool:
        minutes_by_service[ln.service] += ln.line.minutes or 0
        units_by_service[ln.service] += ln.line.units
        units_by_code[ln.line.cpt] += ln.line.units
        minutes_by_code[ln.line.cpt] += ln.line.minutes or 0
    split = cms_split(minutes_by_service)
    if split.total_units != billed:
        return []  # line minutes disagree with the total: TOTAL_TIMED_MINUTES_MISMATCH says so
    if split.allows(units_by_service):
        return []
    families = {ln.service: ln.family for ln in pool if ln.family is not None}
    allowed = [
        _expand(a, families, units_by_code) for a in split.allocations(MAX_LISTED_ALLOCATIONS)
    ]
    shown = "; ".join(_fmt(a) for a in allowed[:3])
    more = split.count() - min(3, len(allowed))
    return [
        Finding(
            RuleId.TIMED_UNITS_MISALLOCATED,
            f"{billed} timed units is the right total, but {_fmt(units_by_code)} is not an allowed "
            f"split of the minutes ({_fmt(minutes_by_code, 'min')}); allowed: {shown}"
            + (f" (+{more} more)" if more > 0 else "")
            + ".",
            CMS_UNITS,
            line_ids,
            None,
            expected={
                "allowed_allocations": allowed,
                "allowed_allocations_count": split.count(),
                "unit_rule": UnitRule.CMS_8_MINUTE.value,
            },
            observed={
                "units_by_cpt": dict(sorted(units_by_code.items())),
                "minutes_by_cpt": dict(sorted(minutes_by_code.items())),
            },
            amount_at_risk=_misallocated_amount(ctx, pool, split, units_by_service),
        )
    ]


def _expand(
    by_service: dict[str, int], families: dict[str, Family], billed: dict[str, int]
) -> dict[str, int]:
    """An allowed allocation by service, as units by CPT code: a family's units go to the
    primary up to its per-day limit, the rest to the add-on (the first add-on code billed)."""
    out: dict[str, int] = {}
    for service, units in by_service.items():
        fam = families.get(service)
        if fam is None:
            out[service] = units
            continue
        first = min(units, fam.primary_max)
        out[fam.primary] = first
        add_on = next((c for c in fam.add_ons if c in billed), fam.add_ons[0])
        out[add_on] = units - first
    return dict(sorted(out.items()))


def _misallocated_amount(
    ctx: VisitContext, pool: list[Line], split: CmsSplit, units_by_service: dict[str, int]
) -> Decimal | None:
    """Units billed on a service beyond the most any allowed allocation gives it, valued at
    that service's lines' per-unit amount."""
    most = split.max_units()
    total = Decimal(0)
    for service, units in units_by_service.items():
        excess = units - most.get(service, 0)
        if excess <= 0:
            continue
        lines = [ln for ln in pool if ln.service == service and ln.billed]
        amount = _cheapest_units(ctx, lines, excess)
        if amount is None:
            return None
        total += amount
    return total


def _fmt(by_code: dict[str, int], unit: str = "") -> str:
    return ", ".join(
        f"{c} x{n}" if not unit else f"{c} {n} {unit}" for c, n in sorted(by_code.items())
    )


def _alone(ctx: VisitContext, lines: list[Line], cms: bool) -> list[Finding]:
    """Each service (code, or add-on family) judged alone by the CPT time rule: the AMA rule,
    and under the CMS rule the codes whose unit is not 15 minutes."""
    if not lines:
        return []
    by_service: dict[str, list[Line]] = defaultdict(list)
    for ln in lines:
        by_service[ln.service].append(ln)
    supported: dict[str, tuple[int, int]] = {}  # service -> (minutes, units)
    for service, group in by_service.items():
        if all(ln.line.minutes is not None for ln in group):
            minutes = sum(ln.line.minutes or 0 for ln in group)
            first, nxt = _unit_lengths(group[0])
            supported[service] = (minutes, service_units(minutes, first, nxt))
    total_supported = sum(u for _, u in supported.values())
    total_billed = sum(ln.line.units for ln in lines)
    rule_name = "CPT time rule" if cms else "CPT midpoint rule"
    out = []
    for service in sorted(supported):
        minutes, units = supported[service]
        group = by_service[service]
        billed = sum(ln.line.units for ln in group)
        if billed == units:
            continue
        over = billed > units
        out.append(
            Finding(
                RuleId.TIMED_UNITS_EXCEED_MINUTES if over else RuleId.TIMED_UNITS_BELOW_MINUTES,
                f"{service}{' family' if group[0].family else ''}: {billed} unit(s) billed; "
                f"{minutes} documented minutes support {units} under the {rule_name} "
                "(each service on its own, minutes not pooled).",
                LONG_UNIT_RULE if cms else AMA_TIME_RULE,
                ids(group),
                service,
                expected={
                    "units": units,
                    "total_units": total_supported,
                    "unit_rule": ctx.policy.unit_rule.value,
                },
                observed={"units": billed, "minutes": minutes, "total_units": total_billed},
                amount_at_risk=_cheapest_units(ctx, group, billed - units) if over else None,
            )
        )
    return out


def _unit_lengths(ln: Line) -> tuple[int, int]:
    if ln.family is not None:
        return ln.family.primary_unit, ln.family.add_on_unit
    assert ln.entry is not None and ln.entry.unit_minutes is not None
    return ln.entry.unit_minutes, ln.entry.unit_minutes


def check_add_on_family_split(ctx: VisitContext) -> list[Finding]:
    """TIMED_UNITS_MISALLOCATED within an add-on family: a rule family of its own because it
    reads the patient's other visits of the day (re-judgement scope `day`,
    compliance/rules/__init__.py), while the other unit rules read the visit alone.

    Within an add-on family, the primary takes its units up to its per-day limit (97129
    "initial 15 minutes": 1 a day, this patient's earlier visits of the day included) and the
    add-on the rest. An add-on billed with no primary that day is ADD_ON_CODE_WITHOUT_PRIMARY's
    finding, not this one."""
    groups: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.timed:
        if ln.family is not None:
            groups[ln.family.primary].append(ln)
    out = []
    for primary in sorted(groups):
        group = groups[primary]
        fam = group[0].family
        assert fam is not None
        p_units = sum(ln.line.units for ln in group if ln.line.cpt == primary)
        family_units = sum(ln.line.units for ln in group)
        earlier = sum(x.units for v in ctx.same_day for x in v.lines if x.cpt == primary)
        allowed = min(family_units, max(0, fam.primary_max - earlier))
        if p_units == allowed or (p_units == 0 and earlier == 0):
            continue
        add_on = next((ln.line.cpt for ln in group if ln.line.cpt != primary), fam.add_ons[0])
        excess = p_units - allowed
        primary_lines = [ln for ln in group if ln.line.cpt == primary and ln.billed]
        out.append(
            Finding(
                RuleId.TIMED_UNITS_MISALLOCATED,
                f"{primary} is billed with {p_units} unit(s); it takes at most {fam.primary_max} "
                f"a day ({earlier} already billed on an earlier visit that day): bill "
                f"{primary} x{allowed} and {add_on} x{family_units - allowed}.",
                f"CPT descriptors of {primary} ('initial') and {add_on} ('each additional'); "
                f"{CPT_ADD_ON}",
                ids(group),
                primary,
                expected={
                    "units_by_cpt": {primary: allowed, add_on: family_units - allowed},
                    "max_units_per_day": fam.primary_max,
                },
                observed={
                    "units_by_cpt": {
                        c: sum(ln.line.units for ln in group if ln.line.cpt == c)
                        for c in sorted({ln.line.cpt for ln in group})
                    },
                    "primary_units_earlier_same_day": earlier,
                },
                amount_at_risk=_cheapest_units(ctx, primary_lines, excess) if excess > 0 else None,
            )
        )
    return out
