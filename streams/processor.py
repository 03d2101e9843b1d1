"""One input record -> the records to publish. No Kafka here: the agent feeds it records and
sends what it returns, so it is tested without a broker.

Everything that can go wrong with a record ends as exactly one dead letter carrying the reason
and the original bytes; nothing raises out of `handle`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from compliance import ENGINE_VERSION, Engine
from compliance.state import PatientHistory
from schemas.common import DeadLetterReason
from schemas.deadletter import DeadLetter, SourceRecord
from schemas.decode import Rejection, decode_visit
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """An input record as the consumer saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    #: None only for a state tombstone (a deleted key's changelog record).
    value: bytes | None
    #: None: the producer's partitioner decides (by key); set for changelog records, which
    #: must go to the input record's partition.
    partition: int | None = None
    #: State writes: the key's latest value as an Output, used when this one must be re-sent,
    #: so a retry never puts an older value after a newer one in the changelog.
    latest: Callable[[], Output] | None = field(default=None, compare=False, repr=False)
    #: Called with the broker's RecordMetadata once the output is acknowledged.
    on_acked: Callable[[Any], None] | None = field(default=None, compare=False, repr=False)


#: Bytes a dead letter keeps free under the topic's record limit for Kafka's own framing
#: (record batch header, record varints, timestamps): a batch holding one record adds < 100.
DEADLETTER_FRAMING_BYTES = 1024


def _now() -> datetime:
    return datetime.now(UTC)


class Processor(Protocol):
    """One input record -> the records to publish; never raises (bad input: a dead letter)."""

    def handle(self, rec: Record) -> list[Output]: ...


class StateStore(Protocol):
    """Per-patient state by input partition (streams.state.TableState in the worker)."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def put(self, partition: int, key: bytes, value: bytes | None) -> Output: ...


class VisitProcessor:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = _now,
        state: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine or Engine()
        self.clock = clock
        metrics.build.info(
            {"engine_version": ENGINE_VERSION, "ruleset_version": self.engine.ruleset_version}
        )
        #: Without state (unit tests, tools) visits are judged alone.
        self.state = state
        #: The dead-letter topic's real record limit (streams.topics reads it at start; it can
        #: be lower than TC_DEADLETTER_MAX_BYTES when the topic already existed).
        self.deadletter_limit = settings.deadletter_max_bytes
        self.patient_ref_pattern = settings.patient_ref_regex

    def handle(self, rec: Record) -> list[Output]:
        started = time.perf_counter()
        try:
            outputs = self._handle(rec)
        except Exception as exc:
            # The exception text may quote payload contents; log and publish its type only.
            log.error(
                "processing_error at %s[%d]@%d: %s",
                rec.topic,
                rec.partition,
                rec.offset,
                type(exc).__name__,
            )
            outputs = [
                self._dead_letter(
                    rec,
                    DeadLetterReason.PROCESSING_ERROR,
                    f"unexpected {type(exc).__name__} while checking the visit",
                )
            ]
        self.metrics.processing.observe(time.perf_counter() - started)
        return outputs

    def _handle(self, rec: Record) -> list[Output]:
        if rec.value is None:
            return [
                self._dead_letter(
                    rec, DeadLetterReason.INVALID_JSON, "record has no value (tombstone)"
                )
            ]
        result = decode_visit(rec.value, self.settings.max_record_bytes, self.patient_ref_pattern)
        if isinstance(result, Rejection):
            if result.patient_ref is not None:
                self.metrics.patient_ref_rejections_by_problem[result.patient_ref].inc()
            return [self._dead_letter(rec, result.reason, result.detail)]
        if not rec.key:
            return [
                self._dead_letter(
                    rec,
                    DeadLetterReason.SCHEMA_VIOLATION,
                    "record key is empty; it must be the visit's patient_ref",
                )
            ]
        if rec.key != result.patient_ref.encode():
            return [
                self._dead_letter(
                    rec,
                    DeadLetterReason.SCHEMA_VIOLATION,
                    "record key is not the visit's patient_ref",
                )
            ]
        now = self.clock()
        state, history = self.state, None
        if state is not None:
            stored = state.get(rec.partition, rec.key)
            history = PatientHistory.from_bytes(stored) if stored else PatientHistory()
        # seq = the record's offset: a visit is judged against what came before it in its
        # partition, so a replay after a crash gives the same findings (compliance/state.py).
        outcome = self.engine.evaluate(result, now, history, seq=rec.offset)
        key = result.visit_id.encode()
        s = self.settings
        out = [Output(s.topic_alerts, key, a.to_json()) for a in outcome.alerts]
        out.append(Output(s.topic_checked, key, outcome.checked.to_json()))
        if state is not None and outcome.history is not None:
            # Written even when a re-delivery changed nothing: the local store may hold a
            # value whose changelog record never reached the broker before a crash.
            out.append(state.put(rec.partition, rec.key, outcome.history.to_bytes()))
        m = self.metrics
        for a in outcome.alerts:
            m.alert(a.rule_id, a.severity).inc()
            amount = a.body.get("amount_at_risk")
            if amount is not None:
                m.amount_at_risk_by_rule[a.rule_id].inc(float(amount))
        m.visits_by_status[outcome.checked.status.value].inc()
        m.episode_evaluations.labels(status=outcome.episode_status.value).inc()
        if outcome.kx_unknown_amount_lines:
            m.kx_unknown_amount_lines.inc(outcome.kx_unknown_amount_lines)
        m.event_age.observe(max(0.0, (now - result.occurred_at).total_seconds()))
        return out

    def _dead_letter(self, rec: Record, reason: DeadLetterReason, detail: str) -> Output:
        """One dead letter that always fits the dead-letter topic's record limit. What does not
        fit is left out, keeping the value (needed to replay) before the key: first the key's
        base64 copy, then the key, then the value; `detail` says what was left out. The
        record's topic, partition and offset are always kept."""
        budget = self.deadletter_limit - DEADLETTER_FRAMING_BYTES
        key, value = rec.key, rec.value
        key_b64 = base64.b64encode(key).decode() if key is not None else None
        value_b64 = base64.b64encode(value).decode() if value is not None else None
        no_value = (
            f"original value of {len(value or b'')} bytes not attached: it does not fit the "
            f"dead-letter topic's {self.deadletter_limit}-byte record limit"
        )
        no_key = f"original {len(key or b'')}-byte key left out: it does not fit the topic"
        options: list[tuple[bytes | None, str | None, str | None, list[str]]] = [
            (key, key_b64, value_b64, []),
            (key, None, value_b64, ["copy of the key not attached (too large)"]),
            (None, None, value_b64, ["published without the original key", no_key]),
            (key, key_b64, None, [no_value]),
            (key, None, None, [no_value, "copy of the key not attached (too large)"]),
            (None, None, None, [no_value, "published without the original key", no_key]),
        ]
        for out_key, out_key_b64, out_value_b64, notes in options:
            text = detail + "".join(f" ({note})" for note in notes)
            letter = self._letter(rec, reason, text, out_key_b64, out_value_b64)
            if self._size(out_key, letter) <= budget:
                break
        self.metrics.visits_by_status["rejected"].inc()
        self.metrics.dead_letters_by_reason[reason].inc()
        return Output(self.settings.topic_deadletter, out_key, letter)

    @staticmethod
    def _size(key: bytes | None, value: bytes) -> int:
        return len(value) + (len(key) if key is not None else 0)

    def _letter(
        self,
        rec: Record,
        reason: DeadLetterReason,
        detail: str,
        key_b64: str | None,
        value_b64: str | None,
    ) -> bytes:
        return (
            DeadLetter(
                reason=reason,
                detail=detail,
                source=SourceRecord(
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    timestamp=rec.timestamp_ms,
                ),
                key_b64=key_b64,
                value_b64=value_b64,
                rejected_at=self.clock(),
            )
            .model_dump_json()
            .encode()
        )
