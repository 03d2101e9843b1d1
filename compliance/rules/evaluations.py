"""EVALUATION_DUPLICATE: more than one evaluation or re-evaluation of one discipline for one
patient on one date of service, earlier visits of the day included (NCCI Policy Manual Ch. XI
sec. P.1: one PT and one OT evaluation/re-evaluation per date of service). Which code evaluates
which discipline: the catalog's `evaluates`; which disciplines are limited: ncci_policy.toml.
Each billed line is one evaluation; more units on one line are UNTIMED_CODE_MULTIPLE_UNITS."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from compliance.catalog import Evaluates
from compliance.findings import Finding, RuleId
from compliance.rules.context import Line, VisitContext, ids


def check_evaluation_duplicate(ctx: VisitContext) -> list[Finding]:
    here: dict[Evaluates, list[Line]] = defaultdict(list)
    for ln in ctx.lines:
        if ln.billed and ln.entry is not None and ln.entry.evaluates is not None:
            here[ln.entry.evaluates].append(ln)
    out = []
    for discipline in sorted(here):
        limit = ctx.rules.ncci_policy.evaluation_limit(discipline)
        if limit is None:
            continue
        earlier = [
            x.cpt
            for v in ctx.same_day
            for x in v.lines
            if (e := ctx.catalog.get(x.cpt)) is not None and e.evaluates is discipline
        ]
        lines = here[discipline]
        count = len(earlier) + len(lines)
        if count <= limit.per_date_of_service:
            continue
        duplicates = min(len(lines), count - limit.per_date_of_service)
        amounts = [ctx.line_amount(ln) for ln in lines]
        known = [a for a in amounts if a is not None]
        at_risk = (
            sum(sorted(known)[:duplicates], Decimal(0)) if len(known) == len(amounts) else None
        )
        out.append(
            Finding(
                RuleId.EVALUATION_DUPLICATE,
                f"{count} {discipline.value} evaluations/re-evaluations for this patient on one "
                f"date of service ({', '.join(sorted(earlier + [ln.line.cpt for ln in lines]))}); "
                f"at most {limit.per_date_of_service} is payable.",
                limit.source,
                ids(lines),
                None,
                expected={
                    "per_date_of_service": limit.per_date_of_service,
                    "discipline": discipline.value,
                },
                observed={"evaluations": count, "earlier_same_day": sorted(earlier)},
                amount_at_risk=at_risk,
            )
        )
    return out
