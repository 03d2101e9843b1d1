"""KX_MODIFIER_MISSING and KX_MODIFIER_PREMATURE (CMS Pub. 100-04, Ch. 5, sec. 10.3; CMS
Therapy Services page; EVENTS.md "v1 additions"), Medicare Part B visits (`kx_threshold`).

The patient's accrued therapy amount for the visit's calendar year in its bucket (PT and SLP
together, OT alone), this visit included (compliance/episodes/accrual.py), against the year's
threshold (kx_thresholds.toml):
- MISSING: the accrual exceeds the threshold and a therapy line of the visit lacks KX ("Claims
  for services over the KX modifier threshold amounts without the KX modifier are denied").
  Amounts not known never make it exceed: a line of unknown amount is not guessed.
- PREMATURE: KX billed while the accrual is below the configured share (default 90%) of the
  threshold. Lines of unknown amount could lift the accrual over the share: they are named in
  `observed` (up to 20, with their count).
"""

from __future__ import annotations

from decimal import Decimal

from compliance.episodes.accrual import KxAccrual
from compliance.findings import Finding, RuleId
from compliance.rules.context import VisitContext, ids

MAX_NAMED = 20


def sides(total_cents: int, threshold: int, share_percent: int) -> tuple[bool, bool]:
    """(over the threshold: MISSING's condition, under the share: PREMATURE's condition) of an
    accrual; re-judgement (compliance/rejudge.py) compares these before and after an event."""
    return total_cents > threshold, total_cents * 100 < share_percent * threshold


def check_kx(ctx: VisitContext) -> list[Finding]:
    ep = ctx.episode
    if ep is None or ep.kx is None:
        return []
    acc = ep.kx
    kx = ctx.rules.kx
    threshold = kx.cents(acc.year, acc.bucket)
    if threshold is None:
        return []  # no threshold data for the year: not guessed
    lines = ctx.therapy_lines()
    lacking = [ln for ln in lines if "KX" not in ln.line.modifiers]
    carrying = [ln for ln in lines if "KX" in ln.line.modifiers]
    expected = {
        "threshold": _usd(threshold),
        "bucket": acc.bucket.value,
        "year": acc.year,
    }
    share = kx.premature_share_percent
    over, under = sides(acc.total_cents, threshold, share)
    out: list[Finding] = []
    if lacking and over:
        out.append(
            Finding(
                RuleId.KX_MODIFIER_MISSING,
                f"The patient's {acc.year} {_name(acc)} therapy amount, this visit included, is "
                f"${_usd(acc.total_cents)}, over the ${_usd(threshold)} threshold; "
                f"{len(lacking)} therapy line(s) lack the KX modifier.",
                kx.source(acc.year),
                ids(lacking),
                None,
                expected={**expected, "modifier": "KX"},
                observed={
                    "accrued": _usd(acc.total_cents),
                    "accrued_before_visit": _usd(acc.before_cents),
                    "lines_without_kx": len(lacking),
                },
                amount_at_risk=ctx.lines_amount(lacking),
            )
        )
    if carrying and under:
        observed: dict[str, object] = {
            "accrued": _usd(acc.total_cents),
            "share_of_threshold_percent": round(acc.total_cents * 100 / threshold, 1),
        }
        if acc.unknown_lines:
            observed["unknown_amount_lines"] = acc.unknown_lines
            observed["unknown_amount"] = _named(acc, ctx.visit.visit_id)
        out.append(
            Finding(
                RuleId.KX_MODIFIER_PREMATURE,
                f"KX billed while the patient's {acc.year} {_name(acc)} therapy amount, this visit "
                f"included, is ${_usd(acc.total_cents)}: below {share}% of the "
                f"${_usd(threshold)} threshold"
                + (
                    f" ({acc.unknown_lines} line(s) of unknown amount could change this)."
                    if acc.unknown_lines
                    else "."
                ),
                f"{kx.premature_source}; {kx.source(acc.year)}",
                ids(carrying),
                None,
                expected={**expected, "kx_from_share_percent": share},
                observed=observed,
            )
        )
    return out


def _name(acc: KxAccrual) -> str:
    return "PT and SLP" if acc.bucket.value == "PT_SLP" else "OT"


def _usd(cents: int) -> str:
    return str((Decimal(cents) / 100).quantize(Decimal("0.01")))


def _named(acc: KxAccrual, visit_id: str) -> list[dict[str, object]]:
    named: list[dict[str, object]] = []
    if acc.own.unknown:
        named.append({"visit_id": visit_id, "line_ids": list(acc.own.unknown)})
    for visit_id, line_ids in acc.unknown_before:
        named.append({"visit_id": visit_id, "line_ids": list(line_ids)})
    return named[:MAX_NAMED]
