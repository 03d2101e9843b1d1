"""The compliance engine: a validated visit in, findings (and alert events) out. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from compliance.alerts import AlertEvent, CheckedEvent, build_alerts, build_checked
from compliance.catalog import Catalog, load_catalog
from compliance.findings import Finding
from compliance.policy import PayerPolicies, load_policies
from compliance.rules import RULE_IDS, RULES, VisitContext
from schemas.visit import TherapyVisitCompleted

ENGINE_VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class Outcome:
    alerts: list[AlertEvent]
    checked: CheckedEvent


class Engine:
    """Holds the catalog and payer policies (loaded and validated once) and runs every rule."""

    __slots__ = ("catalog", "policies")

    def __init__(
        self, catalog: Catalog | None = None, policies: PayerPolicies | None = None
    ) -> None:
        self.catalog = catalog if catalog is not None else load_catalog()
        self.policies = policies if policies is not None else load_policies()

    @property
    def rules_evaluated(self) -> int:
        return len(RULE_IDS)

    def check(self, visit: TherapyVisitCompleted) -> list[Finding]:
        """All findings for a visit; none for a compliant one. Deterministic order."""
        ctx = VisitContext.build(visit, self.catalog, self.policies.resolve(visit))
        findings: list[Finding] = []
        for rule, _ in RULES:
            findings.extend(rule(ctx))
        return findings

    def evaluate(self, visit: TherapyVisitCompleted, now: datetime) -> Outcome:
        alerts = build_alerts(visit, self.check(visit), now, ENGINE_VERSION)
        checked = build_checked(visit, alerts, self.rules_evaluated, now, ENGINE_VERSION)
        return Outcome(alerts, checked)
