"""The EHR path's two stream stages, as record processors the pipeline drives (no Kafka here):

    ehr.hl7v2.inbound.v1 | ehr.fhir.inbound.v1 -> EhrParser -> ehr.visit.parts.v1 (key patient_ref)
    ehr.visit.parts.v1 -> VisitJoiner (table ehr-visit-join) -> therapy.visit.completed.v1

Parsing re-keys every part by `patient_ref` (a keyed hash computed from PID; raw inbound records
may be keyed however the sender likes), so the join runs co-partitioned with its table. The join
keeps each visit's parts (ehr/join.py `VisitState`) and emits the `TherapyVisitCompleted` when
both halves are there; a visit that waits longer than TC_JOIN_WAIT_S with one part is emitted by
`VisitJoiner.expire` with `parts_missing`, and the checks say what is missing. Rejected input goes
to `ehr.deadletter.v1` (schemas/ehr_deadletter.py) with the reason and the original bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from pydantic import ValidationError

from ehr import PART_ADAPTER, AssemblyProblem, EhrConfig, Rejection, RejectReason, VisitState
from ehr import assemble as assemble_visit
from ehr import fold as join_fold
from ehr.fhir import parse_fhir
from ehr.hl7v2 import parse_hl7v2_parts
from ehr.parts import AnyPart
from runtime.deadletters import fit, with_notes
from runtime.settings import Settings
from schemas.ehr_deadletter import EhrDeadLetter, EhrSource
from streams.metrics import Metrics
from streams.processor import Output, Record
from streams.transaction import StaleTransaction, Store, Transaction

log = logging.getLogger("streams.ehr")

Part = AnyPart
#: Separates patient_ref and visit key in the join table's key (neither contains it).
KEY_SEP = "\x1f"


def _now() -> datetime:
    return datetime.now(UTC)


class EhrDeadLetters:
    """Dead letters of the EHR path (`ehr.deadletter.v1`), fitted to the topic's record limit
    (runtime/deadletters.py)."""

    def __init__(self, settings: Settings, metrics: Metrics, clock: Callable[[], datetime]):
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        #: The topic's real record limit once the worker has read it (streams/app.py).
        self.deadletter_limit = settings.deadletter_max_bytes

    def letter(
        self,
        rec: Record | None,
        fmt: str,
        reason: str,
        detail: str,
        control_id: str | None = None,
        key: bytes | None = None,
        *,
        value: bytes | None = None,
        partition: int | None = None,
    ) -> Output:
        """A dead letter for `rec` (None: the join's own state, e.g. parts that cannot form a
        visit or a stored record that cannot be read, whose bytes are `value`; the source then
        names the parts topic and `partition` without an offset)."""
        if rec is not None:
            value = rec.value
            source = EhrSource(
                via="kafka",
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                timestamp=rec.timestamp_ms,
                control_id=control_id if control_id and control_id.isascii() else None,
            )
        else:
            source = EhrSource(
                via="kafka", topic=self.settings.topic_ehr_parts, partition=partition
            )

        def render(_key_b64: str | None, value_b64: str | None, notes: list[str]) -> bytes:
            return (
                EhrDeadLetter(
                    format="fhir" if fmt == "fhir" else "hl7v2",
                    reason=reason,
                    detail=with_notes(detail, notes),
                    source=source,
                    value_b64=value_b64,
                    rejected_at=self.clock(),
                )
                .model_dump_json()
                .encode()
            )

        fitted = fit(self.deadletter_limit, key, value, render, key_copy=False)
        self.metrics.ehr_rejected_by_reason(reason).inc()
        topic = self.settings.topic_ehr_deadletter
        smallest = Output(topic, None, fitted.smallest)
        return Output(topic, fitted.key, fitted.letter, shrink=lambda: smallest)


class EhrParser:
    """Raw HL7 v2 / FHIR records -> parts keyed by patient_ref, or EHR dead letters."""

    def __init__(
        self,
        settings: Settings,
        config: EhrConfig,
        metrics: Metrics,
        clock: Callable[[], datetime] = _now,
        letters: EhrDeadLetters | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics
        self.dead = letters or EhrDeadLetters(settings, metrics, clock)

    def _format(self, rec: Record | None) -> str:
        return (
            "fhir" if rec is not None and rec.topic == self.settings.topic_fhir_inbound else "hl7v2"
        )

    def failed(self, rec: Record | None, exc: BaseException) -> Output:
        detail = f"unexpected {type(exc).__name__} while parsing"
        return self.dead.letter(rec, self._format(rec), "processing_error", detail)

    def handle(self, rec: Record, txn: Transaction | None = None) -> list[Output]:
        """Stateless: `txn` is not used."""
        fmt = self._format(rec)
        if rec.value is None:
            return [
                self.dead.letter(
                    rec,
                    fmt,
                    "not_hl7" if fmt == "hl7v2" else "not_fhir",
                    "record has no value (tombstone)",
                )
            ]
        if len(rec.value) > self.settings.max_record_bytes:
            return [
                self.dead.letter(
                    rec,
                    fmt,
                    "too_large",
                    f"record is {len(rec.value)} bytes; the limit is "
                    f"{self.settings.max_record_bytes}",
                )
            ]
        if fmt == "hl7v2":
            # A recurring account's DFT over several dates gives one part per date.
            parsed = parse_hl7v2_parts(rec.value, self.config)
            results: list[Part | Rejection] = (
                [parsed] if isinstance(parsed, Rejection) else list(parsed)
            )
        else:
            # The record's time versions resources without meta.lastUpdated: deterministic on
            # a replay (the wall clock would give a re-delivered bundle new event ids).
            received = (
                datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC)
                if rec.timestamp_ms is not None
                else datetime(1970, 1, 1, tzinfo=UTC)
            )
            fhir = parse_fhir(rec.value, self.config, received)
            # A bundle holding both halves of a visit yields several parts (charges, the
            # encounter's procedures, each DocumentReference); the join emits as soon as charges
            # and one documentation part are in. Documentation first, charges last: the visit is
            # then emitted once, with all of the bundle's documentation (as `convert` applies a
            # bundle whole), not first without its notes and again as a correction.
            parts = sorted(fhir.parts, key=lambda p: p.part == "charges")
            results = [*parts, *fhir.rejections]
            for warning in fhir.warnings:
                # Counted and logged, never silent; the detail names entries, resource types
                # and codes only, the ref is the resource's Type/id (opaque).
                self.metrics.ehr_warnings_by_reason(warning.reason.value).inc()
                log.warning(
                    "%s in %s[%d]@%s (%s): %s",
                    warning.reason.value,
                    rec.topic,
                    rec.partition,
                    rec.offset,
                    warning.message_id or "-",
                    warning.detail,
                )
        out: list[Output] = []
        for r in results:
            if isinstance(r, Rejection):
                out.append(self.dead.letter(rec, fmt, r.reason.value, r.detail, r.message_id))
            else:
                self.metrics.ehr_parts_by_kind(r.part, r.source).inc()
                out.append(
                    Output(
                        self.settings.topic_ehr_parts,
                        r.patient_ref.encode(),
                        r.model_dump_json().encode(),
                    )
                )
        return out


@dataclass(frozen=True, slots=True)
class JoinRecord:
    """The join table's value for one visit: its parts, since when it waits for the missing
    half, the event id last emitted for it, and when it last changed (for retention)."""

    state: VisitState
    waiting_since_ms: int | None
    emitted: str | None
    updated_ms: int

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "state": self.state.model_dump(mode="json"),
                "waiting_since_ms": self.waiting_since_ms,
                "emitted": self.emitted,
                "updated_ms": self.updated_ms,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> JoinRecord:
        body = orjson.loads(raw)
        return cls(
            # Our own JSON (dates as strings): the strict model is validated in JSON mode.
            VisitState.model_validate(body["state"], strict=False),
            body["waiting_since_ms"],
            body["emitted"],
            body["updated_ms"],
        )


class VisitJoiner:
    """Parts (keyed by patient_ref) -> TherapyVisitCompleted events, through the join table. All
    state goes through the batch's transaction (streams/transaction.py): the record of a visit
    saying it was emitted becomes durable only after the visit itself is acknowledged."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        table: Store,
        clock: Callable[[], datetime] = _now,
        letters: EhrDeadLetters | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.table = table
        self.clock = clock
        self.dead = letters or EhrDeadLetters(settings, metrics, clock)

    def failed(self, rec: Record | None, exc: BaseException) -> Output:
        detail = f"unexpected {type(exc).__name__} while joining the visit's parts"
        return self.dead.letter(rec, "hl7v2", "processing_error", detail)

    def handle(self, rec: Record, txn: Transaction) -> list[Output]:
        if rec.value is None or not rec.key:
            return [
                self.dead.letter(
                    rec, "hl7v2", "processing_error", "a parts record without key or value"
                )
            ]
        try:
            part = PART_ADAPTER.validate_json(rec.value)
        except ValidationError as exc:
            return [
                self.dead.letter(
                    rec,
                    "hl7v2",
                    "processing_error",
                    f"not a visit part ({exc.error_count()} errors)",
                )
            ]
        if part.patient_ref.encode() != rec.key:
            return [
                self.dead.letter(
                    rec,
                    part.source,
                    "processing_error",
                    "record key is not the part's patient_ref",
                    key=rec.key,
                )
            ]
        key = f"{part.patient_ref}{KEY_SEP}{part.visit.text}".encode()
        stored = txn.get(self.table, rec.partition, key)
        old = JoinRecord.from_bytes(stored) if stored else None
        state = join_fold(old.state if old else None, part)
        if isinstance(state, Rejection):
            # A control id reused with other content (the first message stands) or a credit
            # that cannot apply (no matching line, below zero, no charges left): the state is
            # not touched, so a re-delivery of this record gives this same dead letter again.
            if state.reason == RejectReason.CONTROL_ID_CONFLICT:
                log.warning(
                    "control_id_conflict on partition %d: a control id reused with other content",
                    rec.partition,
                )
            return [
                self.dead.letter(
                    rec, part.source, state.reason.value, state.detail, part.message_id
                )
            ]
        now_ms = int(self.clock().timestamp() * 1000)
        record = JoinRecord(
            state,
            old.waiting_since_ms if old else None,
            old.emitted if old else None,
            now_ms,
        )
        return self._emit(txn, rec.partition, key, record, partial_ok=False, now_ms=now_ms)

    def _emit(
        self,
        txn: Transaction,
        partition: int,
        key: bytes,
        record: JoinRecord,
        *,
        partial_ok: bool,
        now_ms: int,
    ) -> list[Output]:
        """Assemble the visit if it can be, emit it unless this very assembly was emitted
        before (same event id), and write the record back."""
        out: list[Output] = []
        made = assemble_visit(record.state, partial_ok=partial_ok)
        if made is None:  # waiting for the other half
            waiting = record.waiting_since_ms if record.waiting_since_ms is not None else now_ms
            record = JoinRecord(record.state, waiting, record.emitted, record.updated_ms)
        elif isinstance(made, AssemblyProblem):
            out.append(
                self.dead.letter(None, "hl7v2", "unassemblable", made.detail, partition=partition)
            )
            record = JoinRecord(record.state, None, record.emitted, record.updated_ms)
        else:
            event_id = str(made["event_id"])
            if event_id != record.emitted:
                out.append(
                    Output(
                        self.settings.topic_visits,
                        str(made["patient_ref"]).encode(),
                        orjson.dumps(made),
                    )
                )
                self.metrics.ehr_visits_emitted(
                    "partial" if made.get("parts_missing") else "complete"
                ).inc()
            # A partial visit keeps waiting for its other half (a complete one replaces it).
            still = record.waiting_since_ms if made.get("parts_missing") else None
            record = JoinRecord(record.state, still, event_id, record.updated_ms)
        txn.put(self.table, partition, key, record.to_bytes())
        return out

    def tick(self, txn: Transaction, partitions: set[int]) -> list[Output]:
        """The join's expiry, as a transaction of its own: visits whose other half did not come
        within TC_JOIN_WAIT_S are emitted with what they have; visits untouched for
        TC_JOIN_RETENTION_DAYS are dropped from the table. A stored record that cannot be read
        is dead-lettered with its bytes and dropped, and the scan moves on."""
        now = self.clock()
        now_ms = int(now.timestamp() * 1000)
        out: list[Output] = []
        for partition in sorted(partitions):
            for key, raw in txn.items(self.table, partition):
                mark = txn.mark()
                try:
                    out.extend(self._expire(txn, partition, key, raw, now_ms))
                except StaleTransaction:
                    raise
                except Exception as exc:
                    txn.rollback(mark)
                    log.error(
                        "processing_error in the join's expiry on partition %d: %s",
                        partition,
                        type(exc).__name__,
                    )
                    detail = (
                        f"unexpected {type(exc).__name__} while expiring a stored join record; "
                        "the record (value_b64) was dropped from the join table"
                    )
                    out.append(
                        self.dead.letter(
                            None,
                            "hl7v2",
                            "processing_error",
                            detail,
                            value=raw,
                            partition=partition,
                        )
                    )
                    txn.put(self.table, partition, key, None)
        return out

    def _expire(
        self, txn: Transaction, partition: int, key: bytes, raw: bytes, now_ms: int
    ) -> list[Output]:
        wait_ms = int(self.settings.join_wait_s * 1000)
        keep_ms = int(timedelta(days=self.settings.join_retention_days).total_seconds() * 1000)
        record = JoinRecord.from_bytes(raw)
        if now_ms - record.updated_ms > keep_ms:
            txn.put(self.table, partition, key, None)
            return []
        if record.waiting_since_ms is None or now_ms - record.waiting_since_ms < wait_ms:
            return []
        made = assemble_visit(record.state, partial_ok=True)
        if isinstance(made, dict) and made["event_id"] == record.emitted:
            return []  # already emitted with what it has
        return self._emit(txn, partition, key, record, partial_ok=True, now_ms=now_ms)
