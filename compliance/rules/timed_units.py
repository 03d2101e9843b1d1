"""Timed (15-minute) code units against documented minutes.

CMS 8-minute rule: CMS Pub. 100-04, Ch. 5, sec. 20.2 (pooled total, split across codes).
Per-line minutes are voluntary for Medicare, only the total is required:
CMS Pub. 100-02, Ch. 15, sec. 220.3. AMA/CPT midpoint rule: each code alone, never pooled.
"""

from __future__ import annotations

from collections import defaultdict

from compliance.findings import AMA_TIME_RULE, CMS_DOCUMENTATION, CMS_UNITS, Finding, RuleId
from compliance.rules.context import Line, VisitContext, ids
from compliance.units import ama_units, cms_split, cms_total_units
from schemas.common import UnitRule

#: Alerts list at most this many allowed allocations (ties can allow millions); the count is
#: published beside the list.
MAX_LISTED_ALLOCATIONS = 20


def check_timed_units(ctx: VisitContext) -> list[Finding]:
    if not ctx.timed:
        return []
    findings = _minutes_missing(ctx)
    if ctx.policy.unit_rule is UnitRule.CMS_8_MINUTE:
        findings.extend(_cms(ctx))
    else:
        findings.extend(_ama(ctx))
    return findings


def _minutes_missing(ctx: VisitContext) -> list[Finding]:
    cms = ctx.policy.unit_rule is UnitRule.CMS_8_MINUTE
    out = []
    for ln in ctx.timed:
        if ln.billed and ln.line.minutes is None:
            if cms:
                why = (
                    "the split of units across codes cannot be verified; "
                    "the visit's total timed minutes are still checked"
                )
                ref = f"{CMS_DOCUMENTATION}; {CMS_UNITS}"
            else:
                why = "the units of this code cannot be verified"
                ref = AMA_TIME_RULE
            out.append(
                Finding(
                    RuleId.TIMED_MINUTES_MISSING,
                    f"{ln.line.cpt} billed with {ln.line.units} unit(s) and no documented minutes: {why}.",
                    ref,
                    (ln.id,),
                    ln.line.cpt,
                    expected={"minutes_documented": True, "unit_rule": ctx.policy.unit_rule.value},
                    observed={"units": ln.line.units, "minutes": None},
                )
            )
    return out


def _cms(ctx: VisitContext) -> list[Finding]:
    pooled = ctx.pooled_timed_minutes()
    if pooled is None:
        return []  # no total and a line without minutes: TOTAL_TIMED_MINUTES_MISMATCH reports it
    minutes, minutes_source = pooled
    billed = sum(ln.line.units for ln in ctx.timed)
    supported = cms_total_units(minutes)
    line_ids = ids(ctx.timed)
    expected = {
        "total_units": supported,
        "unit_rule": UnitRule.CMS_8_MINUTE.value,
        "minutes_source": minutes_source,
    }
    observed = {"total_units": billed, "total_timed_minutes": minutes}
    if billed > supported:
        return [
            Finding(
                RuleId.TIMED_UNITS_EXCEED_MINUTES,
                f"{billed} timed units billed; {minutes} documented timed minutes support {supported} "
                "under the CMS 8-minute rule.",
                CMS_UNITS,
                line_ids,
                None,
                expected,
                observed,
            )
        ]
    if billed < supported:
        if ctx.unknown:
            # A code we do not know may be timed and own part of the documented minutes.
            return []
        return [
            Finding(
                RuleId.TIMED_UNITS_BELOW_MINUTES,
                f"{billed} timed units billed; {minutes} documented timed minutes support {supported} "
                "under the CMS 8-minute rule (possible lost revenue).",
                CMS_UNITS,
                line_ids,
                None,
                expected,
                observed,
            )
        ]
    return _cms_split(ctx, billed, line_ids)


def _cms_split(ctx: VisitContext, billed: int, line_ids: tuple[str, ...]) -> list[Finding]:
    if not ctx.all_timed_minutes_known or ctx.unknown:
        return []  # the split is checked only where per-line minutes exist (Pub. 100-02 220.3)
    minutes_by_code: dict[str, int] = defaultdict(int)
    units_by_code: dict[str, int] = defaultdict(int)
    for ln in ctx.timed:
        minutes_by_code[ln.line.cpt] += ln.line.minutes or 0
        units_by_code[ln.line.cpt] += ln.line.units
    split = cms_split(minutes_by_code)
    if split.total_units != billed:
        return []  # line minutes disagree with the total: TOTAL_TIMED_MINUTES_MISMATCH says so
    if split.allows(units_by_code):
        return []
    allowed = split.allocations(MAX_LISTED_ALLOCATIONS)
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
        )
    ]


def _fmt(by_code: dict[str, int], unit: str = "") -> str:
    return ", ".join(
        f"{c} x{n}" if not unit else f"{c} {n} {unit}" for c, n in sorted(by_code.items())
    )


def _ama(ctx: VisitContext) -> list[Finding]:
    by_code: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.timed:
        by_code[ln.line.cpt].append(ln)
    supported: dict[str, tuple[int, int]] = {}  # code -> (minutes, units)
    for code, lines in by_code.items():
        if all(ln.line.minutes is not None for ln in lines):
            minutes = sum(ln.line.minutes or 0 for ln in lines)
            supported[code] = (minutes, ama_units(minutes))
    total_supported = sum(u for _, u in supported.values())
    total_billed = sum(ln.line.units for ln in ctx.timed)
    out = []
    for code in sorted(supported):
        minutes, units = supported[code]
        billed = sum(ln.line.units for ln in by_code[code])
        if billed == units:
            continue
        rule = (
            RuleId.TIMED_UNITS_EXCEED_MINUTES
            if billed > units
            else RuleId.TIMED_UNITS_BELOW_MINUTES
        )
        out.append(
            Finding(
                rule,
                f"{code}: {billed} unit(s) billed; {minutes} documented minutes support {units} "
                "under the CPT midpoint rule (each code on its own, minutes not pooled).",
                AMA_TIME_RULE,
                ids(by_code[code]),
                code,
                expected={
                    "units": units,
                    "total_units": total_supported,
                    "unit_rule": UnitRule.AMA_MIDPOINT.value,
                },
                observed={"units": billed, "minutes": minutes, "total_units": total_billed},
            )
        )
    return out
