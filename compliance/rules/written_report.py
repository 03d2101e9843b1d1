"""Codes whose CPT descriptor includes a written report (97750, 97755: "with written report")
need a signed written report for that code. Which codes: the catalog's `written_report` column."""

from __future__ import annotations

from compliance.findings import Finding, RuleId
from compliance.rules.context import VisitContext
from schemas.common import DocumentKind

REFERENCE = "CPT descriptors of 97750 and 97755 ('with written report')"


def check_written_report(ctx: VisitContext) -> list[Finding]:
    out = []
    for ln in ctx.lines:
        if ln.entry is None or not ln.entry.written_report or not ln.billed:
            continue
        reports = [
            d
            for d in ctx.visit.documents
            if d.kind is DocumentKind.WRITTEN_REPORT and d.cpt == ln.line.cpt
        ]
        signed = sum(1 for d in reports if d.signed_at is not None)
        if signed:
            continue
        state = "an unsigned written report" if reports else "no written report"
        out.append(
            Finding(
                RuleId.WRITTEN_REPORT_MISSING,
                f"{ln.line.cpt} is billed with {state} for that code; its descriptor requires a "
                "signed written report.",
                REFERENCE,
                (ln.id,),
                ln.line.cpt,
                expected={
                    "document_kind": DocumentKind.WRITTEN_REPORT.value,
                    "cpt": ln.line.cpt,
                    "signed": True,
                },
                observed={"written_reports": len(reports), "signed": signed},
                amount_at_risk=ctx.line_amount(ln),
            )
        )
    return out
