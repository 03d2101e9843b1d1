"""The compliance engine: a validated visit (and the patient's history) in, findings, alert
events and the updated history out. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from compliance.alerts import AlertEvent, CheckedEvent, build_alerts, build_checked
from compliance.catalog import Catalog
from compliance.findings import Finding
from compliance.policy import PayerPolicies
from compliance.rules import RULE_IDS, RULES, VisitContext
from compliance.ruleset import ENGINE_VERSION, RuleSet, default_ruleset
from compliance.state import DEFAULT_HORIZON_DAYS, PatientHistory, VisitRecord
from schemas.visit import TherapyVisitCompleted

__all__ = ["ENGINE_VERSION", "Engine", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    alerts: list[AlertEvent]
    checked: CheckedEvent
    #: The patient's history with this visit applied; None when no history was passed in.
    history: PatientHistory | None = None


class Engine:
    """Holds one rule set (loaded and validated once) and runs every rule."""

    __slots__ = ("horizon_days", "rules")

    def __init__(
        self,
        catalog: Catalog | None = None,
        policies: PayerPolicies | None = None,
        *,
        ruleset: RuleSet | None = None,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
    ) -> None:
        rules = ruleset if ruleset is not None else default_ruleset()
        if catalog is not None or policies is not None:
            # Tests swap single tables; the version then no longer names shipped files.
            rules = replace(
                rules,
                catalog=catalog or rules.catalog,
                policies=policies or rules.policies,
                version=rules.version + "+custom",
            )
        if horizon_days < 0:
            raise ValueError("horizon_days must be >= 0")
        self.rules = rules
        self.horizon_days = horizon_days

    @property
    def catalog(self) -> Catalog:
        return self.rules.catalog

    @property
    def policies(self) -> PayerPolicies:
        return self.rules.policies

    @property
    def ruleset_version(self) -> str:
        return self.rules.version

    @property
    def rules_evaluated(self) -> int:
        return len(RULE_IDS)

    def check(
        self,
        visit: TherapyVisitCompleted,
        history: PatientHistory | None = None,
        seq: int | None = None,
    ) -> list[Finding]:
        """All findings for a visit; none for a compliant one. Deterministic order. With a
        history, the visit is judged against its entries with seq' < seq (state.py)."""
        same_day: tuple[VisitRecord, ...] = ()
        if history is not None:
            if seq is None:
                raise ValueError("seq is required with a history")
            same_day = tuple(history.same_day(visit.date_of_service, seq, visit.visit_id))
        ctx = VisitContext.build(visit, self.rules, self.policies.resolve(visit), same_day)
        findings: list[Finding] = []
        for rule, _ in RULES:
            findings.extend(rule(ctx))
        return findings

    def evaluate(
        self,
        visit: TherapyVisitCompleted,
        now: datetime,
        history: PatientHistory | None = None,
        seq: int | None = None,
    ) -> Outcome:
        findings = self.check(visit, history, seq)
        version = self.rules.version
        alerts = build_alerts(visit, findings, now, ENGINE_VERSION, version)
        checked = build_checked(visit, alerts, self.rules_evaluated, now, ENGINE_VERSION, version)
        updated = None
        if history is not None:
            assert seq is not None
            updated = history.apply(VisitRecord.of(visit, seq), self.horizon_days)
        return Outcome(alerts, checked, updated)
