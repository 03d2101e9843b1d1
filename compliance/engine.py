"""The compliance engine: a validated visit (and the patient's history) in, findings, alert
events and the updated history out. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from compliance.alerts import AlertEvent, CheckedEvent, build_alerts, build_checked
from compliance.catalog import Catalog
from compliance.episodes.build import episode_part
from compliance.episodes.judge import EpisodeJudgement, EpisodeStatus, judge
from compliance.findings import Finding
from compliance.policy import PayerPolicies
from compliance.records import VisitRecord
from compliance.rules import RULE_IDS, RULES, VisitContext
from compliance.rules.feed_parts import without_consequences
from compliance.ruleset import ENGINE_VERSION, RuleSet, default_ruleset
from compliance.state import DEFAULT_EPISODE_HORIZON_DAYS, DEFAULT_HORIZON_DAYS, PatientHistory
from schemas.visit import TherapyVisitCompleted

__all__ = ["ENGINE_VERSION", "Engine", "EpisodeStatus", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    alerts: list[AlertEvent]
    checked: CheckedEvent
    #: The patient's history with this visit applied; None when no history was passed in.
    history: PatientHistory | None = None
    #: Whether the episode rules were evaluated for this visit (for a metric by status):
    #: `start_unseen` = the episode's start was never seen and no episode_start_date was given,
    #: so PROGRESS_REPORT_*, PLAN_OF_CARE_MISSING, CERTIFICATION_MISSING and
    #: RECERTIFICATION_MISSING were not evaluated (EVENTS.md: counted, never guessed).
    episode_status: EpisodeStatus = EpisodeStatus.NO_HISTORY
    #: This visit's Medicare Part B therapy lines whose amount is unknown (no allowed_amount and
    #: no fee schedule row): they do not count toward the KX accrual.
    kx_unknown_amount_lines: int = 0

    @property
    def episode_start_unseen(self) -> bool:
        return self.episode_status is EpisodeStatus.START_UNSEEN


@dataclass(frozen=True, slots=True)
class _Run:
    findings: list[Finding]
    judgement: EpisodeJudgement | None
    record: VisitRecord | None


class Engine:
    """Holds one rule set (loaded and validated once) and runs every rule."""

    __slots__ = ("episode_horizon_days", "horizon_days", "rules")

    def __init__(
        self,
        catalog: Catalog | None = None,
        policies: PayerPolicies | None = None,
        *,
        ruleset: RuleSet | None = None,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        episode_horizon_days: int | None = None,
    ) -> None:
        """`horizon_days`: days of same-day details kept per patient (TC_HISTORY_HORIZON_DAYS);
        `episode_horizon_days`: days of episode and KX state (default: 400, or horizon_days when
        longer); both relative to the patient's newest date of service (retention.py)."""
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
        if episode_horizon_days is None:
            episode_horizon_days = max(DEFAULT_EPISODE_HORIZON_DAYS, horizon_days)
        if episode_horizon_days < horizon_days:
            raise ValueError("episode_horizon_days must be >= horizon_days")
        self.rules = rules
        self.horizon_days = horizon_days
        self.episode_horizon_days = episode_horizon_days

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
        history, the visit is judged against its entries with seq' < seq (state.py); the
        episode and KX rules run only with a history."""
        return self._run(visit, history, seq).findings

    def _run(
        self, visit: TherapyVisitCompleted, history: PatientHistory | None, seq: int | None
    ) -> _Run:
        policy = self.policies.resolve(visit)
        judgement = record = None
        if history is None:
            ctx = VisitContext.build(visit, self.rules, policy)
        else:
            if seq is None:
                raise ValueError("seq is required with a history")
            seen = list(history.seen_before(seq, visit.visit_id))
            day = visit.date_of_service
            same_day = tuple(v for v in seen if v.date_of_service == day)
            ctx = VisitContext.build(visit, self.rules, policy, same_day)
            record = VisitRecord.of(visit, seq, episode_part(ctx))
            judgement = judge(record, history, seen, self.episode_horizon_days)
            ctx = ctx.with_episode(judgement)
        findings: list[Finding] = []
        for rule, _ in RULES:
            findings.extend(rule(ctx))
        return _Run(without_consequences(ctx, findings), judgement, record)

    def evaluate(
        self,
        visit: TherapyVisitCompleted,
        now: datetime,
        history: PatientHistory | None = None,
        seq: int | None = None,
    ) -> Outcome:
        run = self._run(visit, history, seq)
        version = self.rules.version
        alerts = build_alerts(visit, run.findings, now, ENGINE_VERSION, version)
        checked = build_checked(visit, alerts, self.rules_evaluated, now, ENGINE_VERSION, version)
        if history is None or run.record is None or run.judgement is None:
            return Outcome(alerts, checked)
        updated = history.apply(run.record, self.horizon_days, self.episode_horizon_days)
        kx = run.judgement.kx
        return Outcome(
            alerts,
            checked,
            updated,
            run.judgement.status,
            len(kx.own.unknown) if kx is not None else 0,
        )
