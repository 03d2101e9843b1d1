"""One input record -> the records to publish. No Kafka here: the agent feeds it records and
sends what it returns, so it is tested without a broker.

Everything that can go wrong with a record ends as exactly one dead letter carrying the reason
and the original bytes: bad input in the stage itself, an exception in `guarded`, which every
stage's records and timers go through (the record's state changes are undone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import msgspec

from compliance import ENGINE_VERSION, Engine, state_layout
from compliance.state_layout import Stored
from compliance.status import StatusEvent, Tally, tally_bytes, tally_of
from runtime.deadletters import fit, with_notes
from runtime.settings import Settings
from schemas.common import DeadLetterReason
from schemas.deadletter import DeadLetter, SourceRecord
from schemas.decode import Rejection, decode_visit
from streams.metrics import Metrics
from streams.notice_state import encode_state, judged_through, read_state, run_key
from streams.state_cache import DecodedCache
from streams.transaction import Chain, StaleTransaction, Store, Transaction

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
    headers: list[tuple[str, bytes]] | None = None
    #: Dead letters: the smallest form of the letter, sent instead when the broker refuses
    #: this one as too large (runtime/deadletters.py).
    shrink: Callable[[], Output] | None = field(default=None, compare=False, repr=False)
    #: Called with the broker's RecordMetadata once the output is acknowledged.
    on_acked: Callable[[Any], None] | None = field(default=None, compare=False, repr=False)
    #: A record batch instead of one record (`key`/`value` unused): these (key, value) pairs
    #: sent to `partition` as one Kafka record batch, which the broker appends whole or not at
    #: all (the pipeline's changelog records: streams/pipeline.py). Acknowledged with the
    #: batch's first offset.
    batch: tuple[tuple[bytes, bytes | None], ...] = ()


#: Per record in a Kafka record batch beyond its key and value: headers (a changelog record's
#: tag), lengths, varints. An estimate, for sizing the batches the pipeline and the broker build.
RECORD_OVERHEAD = 64


def record_bytes(key: bytes | None, value: bytes | None) -> int:
    """A record's estimated bytes in a record batch."""
    return len(key or b"") + len(value or b"") + RECORD_OVERHEAD


def _now() -> datetime:
    return datetime.now(UTC)


class Processor(Protocol):
    """A stage: one input record -> the records to publish, reading and changing its tables
    only through the batch's transaction. Bad input is a dead letter; an exception is turned
    into one by the pipeline (`failed`), which also undoes the record's state changes."""

    def handle(self, rec: Record, txn: Transaction) -> list[Output]: ...

    def failed(self, rec: Record | None, exc: BaseException) -> Output:
        """The `processing_error` dead letter for an exception raised while handling `rec`
        (None: by the stage's timer, outside any record)."""
        ...


class Ticking(Processor, Protocol):
    """A stage with timer work (the join's expiry), run as a transaction of its own."""

    def tick(self, txn: Transaction, partitions: set[int]) -> list[Output]: ...


def guarded(processor: Processor, rec: Record, txn: Transaction) -> list[Output]:
    """`processor.handle`; an exception undoes the record's state changes and becomes the
    stage's `processing_error` dead letter, and the partition moves on. A transaction whose
    partitions were given up (StaleTransaction) is not the record's fault: it propagates and
    the batch is dropped (re-delivered to the partition's owner)."""
    mark = txn.mark()
    try:
        return processor.handle(rec, txn)
    except StaleTransaction:
        raise
    except Exception as exc:
        txn.rollback(mark)
        # The exception text may quote payload contents: its type only.
        log.error(
            "processing_error at %s[%d]@%d: %s",
            rec.topic,
            rec.partition,
            rec.offset,
            type(exc).__name__,
        )
        return [processor.failed(rec, exc)]


def _size(head: bytes | None, visits: list[tuple[bytes, bytes]]) -> int:
    return len(head or b"") + sum(len(k) + len(v) for k, v in visits)


def patient_keys(
    txn: Transaction, table: Store, partition: int, patient: bytes
) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    """A patient's head and visit keys (compliance/state_layout.py) as the transaction sees
    them."""
    return txn.get(table, partition, patient), txn.prefixed(
        table, partition, state_layout.visits_prefix(patient)
    )


def read_patient(patient: bytes, head: bytes | None, visits: list[tuple[bytes, bytes]]) -> Stored:
    """The patient's history from its keys' bytes (EMPTY when it has none)."""
    if head is None and not visits:
        return state_layout.EMPTY
    return state_layout.read(patient, head, visits)


def scratch() -> Transaction:
    """A transaction of its own, for running a stage without a pipeline (tools, tests)."""
    return Chain().begin()


class VisitProcessor:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = _now,
        table: Store | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine or Engine()
        self.clock = clock
        metrics.build.info(
            {"engine_version": ENGINE_VERSION, "ruleset_version": self.engine.ruleset_version}
        )
        #: The per-patient history table; without one (unit tests, tools) visits are judged
        #: alone.
        self.table = table
        #: Decoded histories of patients seen recently (a hit costs no decode); None: off
        #: (TC_STATE_CACHE_MB=0, the default: why in runtime/settings.py).
        self.histories: DecodedCache[Stored] | None = (
            DecodedCache(settings.state_cache_mb * 2**20) if settings.state_cache_mb else None
        )
        #: The dead-letter topic's real record limit (runtime.topics reads it at start; it can
        #: be lower than TC_DEADLETTER_MAX_BYTES when the topic already existed).
        self.deadletter_limit = settings.deadletter_max_bytes
        #: The owned partitions' tallies of open statuses (gauges; compliance/status.py).
        self.tallies: dict[int, Tally] = {}
        self._tallies_shown = 0.0
        #: Per partition, the tally bytes last written and their decoded form.
        self._tally_written: dict[int, tuple[bytes, Tally]] = {}
        self.patient_ref_pattern = settings.patient_ref_regex

    def handle(self, rec: Record, txn: Transaction) -> list[Output]:
        started = time.perf_counter()
        try:
            return self._handle(rec, txn)
        finally:
            self.metrics.processing.observe(time.perf_counter() - started)

    def forget_partitions(self, partitions: set[int]) -> None:
        """The partitions left this worker (the pipeline calls this at a revoke)."""
        for p in partitions:
            self.tallies.pop(p, None)
            self._tally_written.pop(p, None)
        self.metrics.show_tallies(self.tallies.values())
        if self.histories is not None:
            self.histories.drop(partitions)
            self.metrics.state_cache_bytes.set(self.histories.size)

    def failed(self, rec: Record | None, exc: BaseException) -> Output:
        detail = f"unexpected {type(exc).__name__} while checking the visit"
        if rec is None:  # this stage has no timer work; kept total for the protocol
            rec = Record(self.settings.topic_visits, 0, 0, None, None, None)
        return self._dead_letter(rec, DeadLetterReason.PROCESSING_ERROR, detail)

    def _handle(self, rec: Record, txn: Transaction) -> list[Output]:
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
        table, stored, read = self.table, None, None
        if table is not None:
            read = self._read(txn, table, rec.partition, rec.key)
            stored = read[0]
        # seq = the record's offset: a visit is judged against what came before it in its
        # partition, so a replay after a crash gives the same findings (compliance/state.py).
        history = stored.history if stored is not None else None
        outcome = self.engine.evaluate(result, now, history, seq=rec.offset)
        key = result.visit_id.encode()
        s = self.settings
        out = [Output(s.topic_alerts, key, a.to_json()) for a in outcome.alerts]
        out.append(Output(s.topic_checked, key, outcome.checked.to_json()))
        statuses, notices = outcome.statuses, outcome.notices
        if (
            (statuses or notices)
            and stored is not None
            and state_layout.applied(stored, result.visit_id, rec.offset)
        ):
            statuses, notices = [], []  # applied, then folded: published then
        if table is not None and statuses:
            # Same transaction as the state: published (acknowledged) before the state and the
            # input offset are committed (streams/pipeline.py).
            out.extend(
                Output(s.topic_alerts, a.body["visit_id"].encode(), a.to_json())
                for a in outcome.raised
            )
            out.extend(
                Output(s.topic_status, st.visit_id.encode(), st.to_json()) for st in statuses
            )
            self._count_statuses(txn, table, rec.partition, statuses)
        history_after = outcome.history
        if table is not None and history_after is not None and statuses:
            # A new event (statuses are published for new events only). Its date in the
            # partition's daily-run state; and when the daily run already judged the patient's
            # dates after it, those dates again with the visit (a late visit: nothing the runs
            # would have found with it is lost; streams/notice_state.py) - unless it cannot
            # change any date's notices (compliance/notices.py leaves_dates).
            day = result.date_of_service
            through = self._note_visit(txn, table, rec.partition, rec.key, day)
            # From the day after its date (its own date: its notices above), or from its
            # earlier version's date (a correction that moved it: those dates lost it).
            start = day + timedelta(days=1)
            earlier = stored.history.versions(result.visit_id) if stored is not None else ()
            if earlier:
                start = min(start, earlier[-1].date_of_service)
            if through is not None and start <= through and not outcome.dates_unchanged():
                extra, history_after = self.engine.notices_due(
                    history_after, result.patient_ref, start, through, now, result.visit_id
                )
                notices = [*notices, *extra]
        if table is not None:
            # Notices: the same transaction and delivery as the statuses (EVENTS.md
            # "ComplianceNotice v1"), keyed by patient_ref.
            for n in notices:
                out.append(Output(s.topic_notices, rec.key, n.model_dump_json().encode()))
                self.metrics.notices_published_by(n.kind.value).inc()
        if table is not None and read is not None and history_after is not None:
            writes, after = state_layout.changes(
                rec.key, read[0], history_after, (result.visit_id, rec.offset)
            )
            for where, value in writes:
                txn.put(table, rec.partition, where, value)
            if self.histories is not None and writes:
                self._remember(rec.partition, rec.key, read[1], read[2], writes, after)
        m = self.metrics
        for a in outcome.alerts:
            m.alert(a.rule_id, a.severity).inc()
            amount = a.body.get("amount_at_risk")
            if amount is not None:
                m.amount_at_risk_by_rule[a.rule_id].inc(float(amount))
        m.visits_by_status[outcome.checked.status.value].inc()
        m.episode_evaluations_by(outcome.episode_status.value).inc()
        if outcome.kx_unknown_amount_lines:
            m.kx_unknown_amount_lines.inc(outcome.kx_unknown_amount_lines)
        m.event_age.observe(max(0.0, (now - result.occurred_at).total_seconds()))
        return out

    def _count_statuses(
        self, txn: Transaction, table: Store, partition: int, statuses: list[StatusEvent]
    ) -> None:
        """The partition's tally of what is on hold, in the same transaction as the statuses."""
        key = state_layout.tally_key(partition)
        raw = txn.get(table, partition, key)
        # The bytes this processor wrote last (the same object: nothing else wrote the key
        # since, no rollback) come with their decoded tally; anything else is decoded. Taken
        # out while it changes, so a failure half-way never leaves a changed tally cached.
        last = self._tally_written.pop(partition, None)
        tally = last[1] if last is not None and last[0] is raw else tally_of(raw)
        published = self.metrics.status_published_by
        for st in statuses:
            tally.add(st)
            published(st.status.value, st.cause.value).inc()
        value = tally_bytes(tally)
        txn.put(table, partition, key, value)
        self._tally_written[partition] = (value, tally)
        self.tallies[partition] = tally
        now = time.monotonic()
        if now - self._tallies_shown >= 1.0:  # gauges with labels cost: at most once a second
            self._tallies_shown = now
            self.metrics.show_tallies(self.tallies.values())

    def _note_visit(
        self, txn: Transaction, table: Store, partition: int, patient: bytes, day: date
    ) -> date | None:
        """The partition's earliest date of service (where its first daily run starts), and the
        last date the daily run has judged this patient through (None: none yet)."""
        key = run_key(partition)
        state = read_state(txn.get(table, partition, key))
        if state.since is None or day < state.since:
            txn.put(table, partition, key, encode_state(msgspec.structs.replace(state, since=day)))
        return judged_through(state, patient)

    def measure_statuses(self, owned: set[int]) -> None:
        """Re-read the owned partitions' tallies as stored (partitions assigned since, or
        recovered): the gauges of visits on hold."""
        if self.table is None:
            return
        tallies = {}
        for p in sorted(owned):
            try:
                tallies[p] = tally_of(self.table.get(p, state_layout.tally_key(p)))
            except StaleTransaction:
                continue  # not held (yet): recovering, or given up meanwhile
        self.tallies = tallies
        self.metrics.show_tallies(self.tallies.values())

    def _read(
        self, txn: Transaction, table: Store, partition: int, patient: bytes
    ) -> tuple[Stored, bytes | None, list[tuple[bytes, bytes]]]:
        """The patient's history (compliance/state_layout.py) as the transaction sees it, and
        the head's and visits' bytes it was read from."""
        head, visits = patient_keys(txn, table, partition, patient)
        if (head is None and not visits) or self.histories is None:
            return read_patient(patient, head, visits), head, visits
        # The cache answers only for exactly these bytes (streams/state_cache.py).
        stored, hit = self.histories.get(
            partition,
            patient,
            (head, visits),
            _size(head, visits),
            lambda: state_layout.read(patient, head, visits),
        )
        (self.metrics.state_cache_hit if hit else self.metrics.state_cache_miss).inc()
        return stored, head, visits

    def _remember(
        self,
        partition: int,
        patient: bytes,
        head: bytes | None,
        visits: list[tuple[bytes, bytes]],
        writes: list[tuple[bytes, bytes | None]],
        after: Stored,
    ) -> None:
        """Keep `after` as the decoded form of the bytes the table holds once `writes` are in."""
        assert self.histories is not None
        merged = dict(visits)
        for key, value in writes:
            if key == patient:
                head = value
            elif value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        now = sorted(merged.items())
        self.histories.put(partition, patient, (head, now), _size(head, now), after)
        self.metrics.state_cache_bytes.set(self.histories.size)

    def _dead_letter(self, rec: Record, reason: DeadLetterReason, detail: str) -> Output:
        """One dead letter that fits the dead-letter topic's record limit (what is left out
        when it would not: runtime/deadletters.py)."""

        def render(key_b64: str | None, value_b64: str | None, notes: list[str]) -> bytes:
            return self._letter(rec, reason, with_notes(detail, notes), key_b64, value_b64)

        fitted = fit(self.deadletter_limit, rec.key, rec.value, render, key_copy=True)
        self.metrics.visits_by_status["rejected"].inc()
        self.metrics.dead_letters_by_reason[reason].inc()
        topic = self.settings.topic_deadletter
        smallest = Output(topic, None, fitted.smallest)
        return Output(topic, fitted.key, fitted.letter, shrink=lambda: smallest)

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
