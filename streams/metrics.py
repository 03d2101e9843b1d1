"""Prometheus metrics of the worker. Labels carry rule ids, reasons, topics and partitions only:
never a patient, visit or event id (those are unbounded and, for patients, PHI-adjacent)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from compliance import ENGINE_VERSION
from compliance.episodes.judge import EpisodeStatus
from compliance.findings import SEVERITY, RuleId
from compliance.status import Tally
from runtime.metrics import PREFIX
from schemas.common import DeadLetterReason
from schemas.notice import NoticeKind
from schemas.patient_ref import PatientRefProblem

# `*_created` series double the scrape size and no dashboard or rule of ours uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client


class Children:
    """A labelled metric's children by label values (in the metric's label order), each looked
    up once: prometheus_client's `.labels()` costs more than the increment on the hot path.
    A child is created on first use, as `.labels()` creates it, so no series appears sooner."""

    __slots__ = ("_by", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._by: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._by.get(values)
        if child is None:
            child = self._by[values] = self._metric.labels(*values)
        return child


class Metrics:
    """One registry per worker (tests build their own, so nothing leaks between them)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._checks(self.registry)
        self._ehr(self.registry)
        self._state(self.registry)
        self._delivery(self.registry)
        self._status(self.registry)
        self._notices(self.registry)
        self._children()

    def _checks(self, r: CollectorRegistry) -> None:
        """What the checks found: visits by outcome, alerts, dead letters, timings."""
        self.visits = Counter(
            f"{PREFIX}_visits_processed",
            "Input records processed, by outcome (clean, flagged, rejected).",
            ["status"],
            registry=r,
        )
        self.alerts = Counter(
            f"{PREFIX}_alerts",
            "Compliance alerts published, by rule and severity.",
            ["rule_id", "severity"],
            registry=r,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.patient_ref_rejections = Counter(
            f"{PREFIX}_patient_ref_rejections",
            "Records dead-lettered for their patient_ref, by problem: space (a name or a date "
            "leaking in?), pattern (outside TC_PATIENT_REF_PATTERN), charset, length, type. "
            "Also counted in dead_letters{reason=schema_violation}.",
            ["reason"],
            registry=r,
        )
        self.processing = Histogram(
            f"{PREFIX}_processing_seconds",
            "Time to validate and check one record.",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
            registry=r,
        )
        self.event_age = Histogram(
            f"{PREFIX}_event_age_seconds",
            "Now minus the visit's occurred_at when processed.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 1800, 3600, 21600, 86400),
            registry=r,
        )
        self.amount_at_risk = Counter(
            f"{PREFIX}_amount_at_risk",
            "USD put at risk by the alerts published, by rule (alerts with a known amount).",
            ["rule_id"],
            registry=r,
        )
        self.episode_evaluations = Counter(
            f"{PREFIX}_episode_evaluations",
            "Visits by what the episode rules could do: evaluated, start_unseen (the episode's "
            "start was never seen: not guessed), beyond_horizon, no_history.",
            ["status"],
            registry=r,
        )
        self.kx_unknown_amount_lines = Counter(
            f"{PREFIX}_kx_unknown_amount_lines",
            "Medicare Part B therapy lines with no allowed_amount and no fee schedule amount: "
            "they do not count toward the KX threshold.",
            registry=r,
        )

    def _ehr(self, r: CollectorRegistry) -> None:
        """The EHR path: parts parsed, rejections, warnings, visits the join emitted."""
        self.ehr_parts = Counter(
            f"{PREFIX}_ehr_parts",
            "EHR messages parsed into visit parts, by part (charges, documentation) and source.",
            ["part", "source"],
            registry=r,
        )
        self.ehr_rejected = Counter(
            f"{PREFIX}_ehr_rejected",
            "EHR messages and resources dead-lettered, by reason.",
            ["reason"],
            registry=r,
        )
        self.ehr_warnings = Counter(
            f"{PREFIX}_ehr_warnings",
            "EHR resources read on without a part (e.g. a non-therapy FHIR Procedure), by reason.",
            ["reason"],
            registry=r,
        )
        self.ehr_visits = Counter(
            f"{PREFIX}_ehr_visits_emitted",
            "Visits the join emitted: complete (both parts) or partial (one part after the wait).",
            ["kind"],
            registry=r,
        )

    def _state(self, r: CollectorRegistry) -> None:
        """The tables: size, restore time, changelog records written."""
        self.state_keys = Gauge(
            f"{PREFIX}_state_keys",
            "Keys in the local state store, per table (estimated by RocksDB).",
            ["table"],
            registry=r,
        )
        self.state_bytes = Gauge(
            f"{PREFIX}_state_bytes",
            "Size of the local state store on disk, per table (RocksDB live data estimate).",
            ["table"],
            registry=r,
        )
        self.state_recovery_seconds = Gauge(
            f"{PREFIX}_state_recovery_seconds",
            "Time from the last partition assignment to the end of the state's changelog "
            "recovery (restore at start and after each rebalance).",
            registry=r,
        )
        self.state_changes = Counter(
            f"{PREFIX}_state_changes",
            "Changelog records written by the state transactions (one per changed key and "
            "batch), each acknowledged before the input offsets it covers are committed.",
            registry=r,
        )

        self.state_cache_lookups = Counter(
            f"{PREFIX}_state_cache_lookups",
            "Patient histories read, by whether their decoded form was in memory (hit) or was "
            "decoded from the store's bytes (miss).",
            ["result"],
            registry=r,
        )
        self.state_cache_hit = self.state_cache_lookups.labels(result="hit")
        self.state_cache_miss = self.state_cache_lookups.labels(result="miss")
        self.state_cache_bytes = Gauge(
            f"{PREFIX}_state_cache_bytes",
            "Estimated memory of the decoded patient histories kept (TC_STATE_CACHE_MB bounds it).",
            registry=r,
        )

    def _status(self, r: CollectorRegistry) -> None:
        """The visit status topic (EVENTS.md "VisitStatus v1"): what is on hold now, over the
        partitions this worker owns (sum over workers), from each partition's tally."""
        self.visit_status_published = Counter(
            f"{PREFIX}_visit_status_published",
            "VisitStatus records published, by status and cause (visit, correction, "
            "related_visit: a re-judgement).",
            ["status", "cause"],
            registry=r,
        )
        self.visits_on_hold = Gauge(
            f"{PREFIX}_visits_on_hold",
            "Visits whose current status is hold (an open error alert), in the partitions this "
            "worker owns.",
            registry=r,
        )
        self.hold_amount_at_risk = Gauge(
            f"{PREFIX}_hold_amount_at_risk_usd",
            "Known amount at risk of the visits on hold, USD, in the partitions this worker owns.",
            registry=r,
        )
        self.open_alerts = Gauge(
            f"{PREFIX}_open_alerts",
            "Alerts open in visits' current statuses, by rule and effective severity, in the "
            "partitions this worker owns.",
            ["rule_id", "severity"],
            registry=r,
        )
        self.open_amount_at_risk = Gauge(
            f"{PREFIX}_open_amount_at_risk_usd",
            "Known amount at risk of the open alerts, by rule, USD, in the partitions this "
            "worker owns.",
            ["rule_id"],
            registry=r,
        )

    def _notices(self, r: CollectorRegistry) -> None:
        """ComplianceNotice v1 (EVENTS.md): what was published, and what falls due soon."""
        self.notices_published = Counter(
            f"{PREFIX}_notices_published",
            "ComplianceNotice records published, by kind (a notice re-sent after a crash "
            "counts again).",
            ["kind"],
            registry=r,
        )
        self.notices_due_next_7_days = Gauge(
            f"{PREFIX}_notices_due_next_7_days",
            "Obligations open at the last daily run whose due_by is within 7 days of its date, "
            "by kind (date-driven kinds), in the partitions this worker owns.",
            ["kind"],
            registry=r,
        )
        self.notice_run_errors = Counter(
            f"{PREFIX}_notice_run_errors",
            "Patients the notices' daily run could not judge (their state could not be read "
            "or judged); the run goes on with the others.",
            registry=r,
        )

    def show_notices_due(self, totals: dict[str, int]) -> None:
        for kind in (
            NoticeKind.CERTIFICATION_DUE,
            NoticeKind.VERBAL_ORDER_SIGNATURE_DUE,
            NoticeKind.RECERTIFICATION_DUE,
        ):
            self.notices_due_next_7_days.labels(kind=kind.value).set(totals.get(kind.value, 0))

    def show_tallies(self, tallies: Iterable[Tally]) -> None:
        """Set the status gauges to the sum of these partitions' tallies."""
        hold = cents = 0
        alerts: dict[str, int] = {}
        amounts: dict[str, int] = {}
        for t in tallies:
            hold += t.hold
            cents += t.hold_cents
            for k, n in t.alerts.items():
                alerts[k] = alerts.get(k, 0) + n
            for k, n in t.cents.items():
                amounts[k] = amounts.get(k, 0) + n
        self.visits_on_hold.set(hold)
        self.hold_amount_at_risk.set(cents / 100)
        self.open_alerts.clear()
        for k, n in alerts.items():
            rule_id, severity = k.split(" ")
            self.open_alerts.labels(rule_id=rule_id, severity=severity).set(n)
        self.open_amount_at_risk.clear()
        for k, n in amounts.items():
            self.open_amount_at_risk.labels(rule_id=k).set(n / 100)

    def _delivery(self, r: CollectorRegistry) -> None:
        """Delivery: batches, retries, gaps, offsets, lag, the assignment, the build."""
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds",
            "Time to process a batch and have its output acknowledged by the broker.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            registry=r,
        )
        self.input_gaps = Counter(
            f"{PREFIX}_input_gaps",
            "Input records that arrived out of order (a skipped offset): the partition was "
            "re-read from the first offset the broker has, nothing was committed past the gap.",
            ["topic"],
            registry=r,
        )
        self.send_retries = Counter(
            f"{PREFIX}_output_send_retries",
            "Output records sent again after "
            "a broker error (a record batch counts its records; the batch is held, input is "
            "not committed).",
            registry=r,
        )
        self.deadletters_shrunk = Counter(
            f"{PREFIX}_deadletters_shrunk",
            "Dead letters the broker refused as too large, re-sent in their smallest form "
            "(without the original bytes; the topic's limit is lower than at start).",
            registry=r,
        )
        self.last_offset = Gauge(
            f"{PREFIX}_last_processed_offset",
            "Offset of the last record processed, per input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.lag = Gauge(
            f"{PREFIX}_consumer_lag",
            "Records waiting in each assigned input partition (high-water mark minus next offset).",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            f"{PREFIX}_assigned_partitions", "Input partitions assigned to this worker.", registry=r
        )
        self.last_progress = Gauge(
            f"{PREFIX}_last_progress_timestamp_seconds",
            "Unix time of the last processed batch.",
            registry=r,
        )
        self.build = Info(f"{PREFIX}_build", "Engine and rule set versions.", registry=r)

    def _children(self) -> None:
        self.build.info({"engine_version": ENGINE_VERSION, "ruleset_version": "unknown"})
        # Every label value is created up front, so dashboards and rate() see zeros rather than
        # gaps, and the hot path increments cached children instead of looking labels up.
        self.visits_by_status = {
            status: self.visits.labels(status=status) for status in ("clean", "flagged", "rejected")
        }
        # By (rule, severity): a rule's severity is fixed by the contract except where it says
        # otherwise (TIMED_MINUTES_MISSING is info under the CMS rule with a documented total).
        # Each rule's contract severity is exported from the start; another one the first time
        # it occurs (`alert`).
        self.alerts_by_rule = Children(self.alerts)
        for rule in RuleId:
            self.alerts_by_rule(rule.value, SEVERITY[rule].value)
        self.amount_at_risk_by_rule = {
            rule.value: self.amount_at_risk.labels(rule_id=rule.value) for rule in RuleId
        }
        self.episode_evaluations_by = Children(self.episode_evaluations)
        for status in EpisodeStatus:
            self.episode_evaluations_by(status.value)
        # Created on first use (no zero series up front, as before).
        self.status_published_by = Children(self.visit_status_published)
        self.notices_published_by = Children(self.notices_published)
        self.dead_letters_by_reason = {
            reason: self.dead_letters.labels(reason=reason.value) for reason in DeadLetterReason
        }
        self.patient_ref_rejections_by_problem = {
            problem: self.patient_ref_rejections.labels(reason=problem.value)
            for problem in PatientRefProblem
        }

    def alert(self, rule_id: str, severity: str) -> Any:
        """The alert counter of a rule at the severity the alert carries."""
        return self.alerts_by_rule(rule_id, severity)

    def ehr_parts_by_kind(self, part: str, source: str) -> Any:
        return self.ehr_parts.labels(part=part, source=source)

    def ehr_rejected_by_reason(self, reason: str) -> Any:
        return self.ehr_rejected.labels(reason=reason)

    def ehr_warnings_by_reason(self, reason: str) -> Any:
        return self.ehr_warnings.labels(reason=reason)

    def ehr_visits_emitted(self, kind: str) -> Any:
        return self.ehr_visits.labels(kind=kind)

    def keep_partitions(self, topic: str, partitions: set[str]) -> None:
        """Remove the per-partition series of `topic` for partitions not in `partitions`."""
        for gauge in (self.lag, self.last_offset):
            for labels in list(gauge._metrics):  # prometheus-client keeps children by labels
                if labels[0] == topic and labels[1] not in partitions:
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the per-partition series of a partition this worker no longer owns, so it never
        reports lag or progress for partitions that moved to another worker."""
        for gauge in (self.lag, self.last_offset):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))
