"""NCCI_PTP_CONFLICT: two codes of one date of service, same patient and rendering NPI (across
visits too), form an NCCI procedure-to-procedure edit in force on that date, and the column-2
line lacks an allowed bypass modifier (indicator 1: 59, XE, XS, XP, XU; indicator 0: none;
indicator 9: not an edit). Edits: the loaded CMS practitioner PTP files and the NCCI Policy
Manual statements shipped as data (Ch. XI sec. P.8). EVENTS.md "v1 additions"."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from compliance.findings import NCCI_MODIFIERS, Finding, RuleId
from compliance.ncci_ptp import BYPASS_MODIFIERS, ModifierIndicator, PtpEdit
from compliance.rules.context import Line, VisitContext, ids


@dataclass(frozen=True, slots=True)
class _Billed:
    """A billed line of this visit (`line` set) or of an earlier visit the same day."""

    cpt: str
    modifiers: tuple[str, ...]
    line: Line | None
    visit_id: str | None
    amount: Decimal | None


def check_ncci_ptp(ctx: VisitContext) -> list[Finding]:
    table = ctx.rules.ptp
    # Every conflict has a line of this visit with an edit partner: most visits have none,
    # and then nothing below needs building (bench/RESULTS.md, issue 13).
    if not any(ln.billed and table.partners(ln.line.cpt) for ln in ctx.lines):
        return []
    day = ctx.visit.date_of_service
    here = [
        _Billed(ln.line.cpt, tuple(ln.line.modifiers), ln, None, None)
        for ln in ctx.lines
        if ln.billed
    ]
    earlier = [
        _Billed(
            x.cpt,
            x.modifiers,
            None,
            v.visit_id,
            Decimal(x.allowed_amount) if x.allowed_amount else None,
        )
        for v in ctx.same_npi
        for x in v.lines
    ]
    everyone = here + earlier
    # One alert per column-2 code (alert ids hang on the line set: two alerts for one column-2
    # line against two column-1 codes of earlier visits would share an id).
    conflicts: dict[str, tuple[list[PtpEdit], list[_Billed], list[_Billed]]] = {}
    for a in here:
        partners = table.partners(a.cpt)
        if not partners:
            continue
        for b in everyone:
            if b is a or b.cpt not in partners or b.cpt == a.cpt:
                continue
            for col1, col2 in ((a, b), (b, a)):
                edit = table.edit_on(col1.cpt, col2.cpt, day)
                if edit is None or edit.bypassed_by(col2.modifiers):
                    continue
                edits, ones, twos = conflicts.setdefault(col2.cpt, ([], [], []))
                if edit not in edits:
                    edits.append(edit)
                if col1 not in ones:
                    ones.append(col1)
                if col2 not in twos:
                    twos.append(col2)
    return [_finding(ctx, *conflicts[k]) for k in sorted(conflicts)]


def _finding(
    ctx: VisitContext, edits: list[PtpEdit], ones: list[_Billed], twos: list[_Billed]
) -> Finding:
    edits = sorted(edits, key=lambda e: e.column1)
    column2 = edits[0].column2
    column1 = [e.column1 for e in edits]
    lines = [b.line for b in (*ones, *twos) if b.line is not None]
    others = sorted({b.visit_id for b in (*ones, *twos) if b.visit_id is not None})
    allowed = all(e.indicator is ModifierIndicator.ALLOWED for e in edits)
    bypass = sorted(BYPASS_MODIFIERS) if allowed else []
    how = (
        f"bypass only with {', '.join(bypass)} on {column2} when clinically justified"
        if bypass
        else "no modifier bypasses this edit"
    )
    where = f" (with an earlier visit of the day: {', '.join(others)})" if others else ""
    amount: Decimal | None = Decimal(0)
    for b in twos:
        value = ctx.line_amount(b.line) if b.line is not None else b.amount
        amount = None if amount is None or value is None else amount + value
    return Finding(
        RuleId.NCCI_PTP_CONFLICT,
        f"{column2} is billed on the same date as {' and '.join(column1)} by the same rendering "
        f"provider{where}: an NCCI edit denies the column-2 code; {how}.",
        f"{NCCI_MODIFIERS}; edit: {'; '.join(e.source for e in edits)}",
        ids(lines),
        column2,
        expected={
            "column1": column1,
            "column2": column2,
            "modifier_indicators": [int(e.indicator) for e in edits],
            "bypass_modifiers": bypass,
            "edits": [
                {
                    "column1": e.column1,
                    "effective": e.effective.isoformat(),
                    "deletion": e.deletion.isoformat() if e.deletion else None,
                }
                for e in edits
            ],
        },
        observed={
            "column2_modifiers": sorted({m for b in twos for m in b.modifiers}),
            "other_visits": others,
        },
        amount_at_risk=amount,
    )
