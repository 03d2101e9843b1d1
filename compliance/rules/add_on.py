"""ADD_ON_CODE_WITHOUT_PRIMARY: an add-on code (CPT: "list separately in addition to code for
primary procedure"; the catalog's `add_on_to`) billed with none of its primary codes for the
same patient on the same date of service, earlier visits of the day included (EVENTS.md)."""

from __future__ import annotations

from collections import defaultdict

from compliance.findings import CPT_ADD_ON, Finding, RuleId
from compliance.rules.context import Line, VisitContext, ids


def check_add_on_without_primary(ctx: VisitContext) -> list[Finding]:
    billed_today = {ln.line.cpt for ln in ctx.lines if ln.billed}
    # The primary billed in any visit of the day, before or after this one: the finding is
    # about the day, and an add-on whose primary came in a later visit is not "without" it.
    billed_today.update(x.cpt for v in (*ctx.same_day, *ctx.same_day_after) for x in v.lines)
    by_code: dict[str, list[Line]] = defaultdict(list)
    for ln in ctx.lines:
        if ln.entry is not None and ln.entry.add_on_to and ln.billed:
            by_code[ln.line.cpt].append(ln)
    out = []
    for code in sorted(by_code):
        primaries = ctx.catalog.get(code).add_on_to  # type: ignore[union-attr]
        if billed_today.intersection(primaries):
            continue
        lines = by_code[code]
        out.append(
            Finding(
                RuleId.ADD_ON_CODE_WITHOUT_PRIMARY,
                f"{code} is an add-on code billed without its primary code "
                f"({' or '.join(primaries)}) for this patient on this date of service.",
                f"CPT descriptor of {code}; {CPT_ADD_ON}",
                ids(lines),
                code,
                expected={"primary_codes": list(primaries)},
                observed={"units": sum(ln.line.units for ln in lines)},
                amount_at_risk=ctx.lines_amount(lines),
            )
        )
    return out
