"""The state transaction in the pipeline, without a broker (streams/pipeline.py,
streams/transaction.py; issue 17's design):

- a batch's changelog records are sent only once its outputs are acknowledged, and only after
  every earlier batch's state is durable; the local store is written (with the changelog offset)
  only once they are acknowledged; the input offsets only then become committable;
- a batch reads the state of earlier batches still in flight;
- a rebalance that gives up on a batch cancels its sends and retries, writes no state, and waits
  for what was already handed to the producer;
- timer work is a transaction of its own in the same order, its state durable only after its
  outputs;
- an exception in a stage undoes the record's state changes and becomes a dead letter;
- the real stages (the check stage's history, the join's table) write only through it.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import errors as kafka_errors

from ehr import load_config
from runtime.settings import Settings
from streams import pipeline as pipeline_module
from streams.checkpoint import TP
from streams.ehr_stages import EhrParser, VisitJoiner
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.processor import Output, Record, VisitProcessor
from streams.publish import Publisher
from streams.transaction import (
    DictStore,
    StaleTransaction,
    Tag,
    Transaction,
    header_tag,
)
from tests.factories import raw, timed_visit
from tests.unit.streams.test_pipeline import Broker, settle

TOPIC = "in"
CHANGELOG = "table-changelog"


class Counter:
    """A stage that counts records per key in its table and says the count (one output)."""

    def __init__(self, store: DictStore, fail_on: bytes | None = None) -> None:
        self.store = store
        self.fail_on = fail_on
        self.stale = False

    def handle(self, rec: Record, txn: Transaction) -> list[Output]:
        if self.stale:
            raise StaleTransaction("partition given up")
        key = rec.key or b""
        count = int(txn.get(self.store, rec.partition, key) or b"0") + 1
        txn.put(self.store, rec.partition, key, str(count).encode())
        if rec.value == self.fail_on:
            raise RuntimeError("a bug after a state change")
        return [Output("out", key, b"%d" % count)]

    def failed(self, rec: Record | None, exc: BaseException) -> Output:
        return Output("dead", None, type(exc).__name__.encode())


def flat(outputs: Iterable[Output]) -> list[Output]:
    """Outputs with each record batch (the changelog's) as its records."""
    out: list[Output] = []
    for o in outputs:
        if o.batch:
            out.extend(
                Output(o.topic, k, v, o.partition, o.headers, on_acked=o.on_acked)
                for k, v in o.batch
            )
        else:
            out.append(o)
    return out


class Harness:
    def __init__(self, **processor: Any) -> None:
        self.broker = Broker()
        self.metrics = Metrics()
        self.store = DictStore(changelog_topic=CHANGELOG)
        self.commits: list[dict[TP, int]] = []
        self.fatal: list[BaseException] = []
        self.stage = Counter(self.store, **processor)
        self.pipeline = Pipeline(
            self.stage,
            Publisher(self.broker.send, self.metrics, max_backoff_s=0.02),
            self.commit,
            self.metrics,
            on_fatal=self.on_fatal,
            generation=lambda: 7,
            handover_timeout_s=0.2,
        )

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        self.commits.append(dict(offsets))
        return True

    async def on_fatal(self, exc: BaseException) -> None:
        self.fatal.append(exc)

    async def submit(self, *recs: tuple[int, int, bytes]) -> None:
        await self.pipeline.submit([Record(TOPIC, p, o, k, k, None) for p, o, k in recs])

    def sent(self, topic: str) -> list[Output]:
        """What was sent to `topic`, a record batch's records one by one."""
        return flat(out for out, _ in self.broker.sent if out.topic == topic)

    def ack(self, topic: str) -> None:
        for i, (out, _) in enumerate(self.broker.sent):
            if out.topic == topic:
                self.broker.ack(i, i + 1)


@pytest.mark.asyncio
async def test_state_follows_the_outputs_and_the_store_follows_the_changelog() -> None:
    h = Harness()
    await h.submit((0, 0, b"a"), (0, 1, b"a"), (0, 2, b"b"))
    await settle()
    assert [o.value for o in h.sent("out")] == [b"1", b"2", b"1"]
    assert h.sent(CHANGELOG) == []  # outputs not acknowledged: no state leaves
    h.ack("out")
    await settle()
    changelog = h.sent(CHANGELOG)
    # One record per changed key of the batch (its latest value), tagged with this owner.
    assert [(o.key, o.value, o.partition) for o in changelog] == [(b"a", b"2", 0), (b"b", b"1", 0)]
    assert {header_tag(o.headers) for o in changelog} == {Tag(1, 7)}
    assert h.store.data == {} and await h.pipeline.commit() == {}  # not before their acks
    h.ack(CHANGELOG)
    await settle()
    assert h.store.data == {0: {b"a": b"2", b"b": b"1"}}
    assert h.store.offsets == {0: 1}  # written with the changelog offset that holds it
    assert h.store.writes == 1  # one write for the partition's changes
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 3}


class Patients(Counter):
    """Writes a patient's head and visits and deletes one (as the check stage's pruning does:
    compliance/state_layout.py), for the patient named by the record."""

    def handle(self, rec: Record, txn: Transaction) -> list[Output]:
        patient = rec.key or b""
        txn.put(self.store, rec.partition, patient + b"\x1fold", None)
        txn.put(self.store, rec.partition, patient + b"\x1fnew", b"visit" * 40)
        txn.put(self.store, rec.partition, patient, b"head")
        return [Output("out", rec.key, b"ok")]


@pytest.mark.asyncio
async def test_a_partitions_changelog_records_go_as_one_record_batch_groups_never_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker appends a record batch whole or not at all: a crash cannot leave part of a
    # patient's changes in the changelog. Oracle: the keys each stage wrote, by patient.
    h = Harness()
    h.pipeline.processor = h.stage = Patients(h.store)
    await h.submit((0, 0, b"P1"), (0, 1, b"P2"), (1, 2, b"P3"))
    await settle()
    h.ack("out")
    await settle()
    batches = [o for o, _ in h.broker.sent if o.topic == CHANGELOG]
    assert [(o.partition, [k for k, _ in o.batch]) for o in batches] == [
        (0, [b"P1\x1fold", b"P1\x1fnew", b"P1", b"P2\x1fold", b"P2\x1fnew", b"P2"]),
        (1, [b"P3\x1fold", b"P3\x1fnew", b"P3"]),
    ]
    h.ack(CHANGELOG)
    await settle()
    assert h.store.offsets == {0: 5, 1: 2}  # the batch's last record's offset
    # A transaction larger than a record batch is split between groups, never inside one.
    monkeypatch.setattr(pipeline_module, "CHANGELOG_BATCH_BYTES", 500)  # a group: ~410
    await h.submit((0, 3, b"P4"), (0, 4, b"P5"))
    await settle()
    h.ack("out")
    await settle()
    batches = [o for o, _ in h.broker.sent if o.topic == CHANGELOG][2:]
    assert [[k for k, _ in o.batch] for o in batches] == [
        [b"P4\x1fold", b"P4\x1fnew", b"P4"],
        [b"P5\x1fold", b"P5\x1fnew", b"P5"],
    ]
    # A group larger than a batch alone (only the EHR join's can be) is split by record.
    h.ack(CHANGELOG)
    await settle()
    monkeypatch.setattr(pipeline_module, "CHANGELOG_BATCH_BYTES", 150)
    await h.submit((0, 5, b"P6"))
    await settle()
    h.ack("out")
    await settle()
    batches = [o for o, _ in h.broker.sent if o.topic == CHANGELOG][4:]
    assert [[k for k, _ in o.batch] for o in batches] == [
        [b"P6\x1fold"],
        [b"P6\x1fnew"],
        [b"P6"],
    ]


@pytest.mark.asyncio
async def test_a_batch_reads_earlier_batches_in_flight_and_becomes_durable_after_them() -> None:
    h = Harness()
    await h.submit((0, 0, b"a"))
    await h.submit((0, 1, b"a"))
    await settle()
    assert [o.value for o in h.sent("out")] == [b"1", b"2"]  # the second saw the first
    h.broker.ack(1, 2)  # the second batch's output first
    await settle()
    assert h.sent(CHANGELOG) == []  # its state waits for the first batch's
    h.broker.ack(0, 1)
    await settle()
    assert [o.value for o in h.sent(CHANGELOG)] == [b"1"]  # the first's, alone
    h.ack(CHANGELOG)
    await settle()
    assert [o.value for o in h.sent(CHANGELOG)] == [b"1", b"2"]  # then the second's
    h.ack(CHANGELOG)
    await settle()
    assert h.store.get(0, b"a") == b"2" and len(h.pipeline.chain) == 0
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 2}


@pytest.mark.asyncio
async def test_a_refused_changelog_holds_the_offsets_and_a_give_up_writes_nothing() -> None:
    h = Harness()
    await h.submit((0, 0, b"a"), (1, 0, b"b"))
    await settle()
    h.ack("out")
    await settle()
    refused = kafka_errors.MessageSizeTooLargeError()
    for _ in range(3):  # the changelog topic refuses every attempt; the batch is retried
        h.broker.fail(refused)
        await asyncio.sleep(0.05)
    assert len(h.sent(CHANGELOG)) > 2 and await h.pipeline.commit() == {}
    await h.pipeline.on_revoked([TP(TOPIC, 0), TP(TOPIC, 1)], timeout=0.05)
    attempts = len(h.broker.sent)
    h.broker.fail(refused)
    await asyncio.sleep(0.2)
    assert len(h.broker.sent) == attempts  # no retry after the give-up
    assert h.store.data == {} and len(h.pipeline.chain) == 0 and h.commits == []
    assert h.pipeline.checkpoint.unfinished == 0 and h.fatal == []


@pytest.mark.asyncio
async def test_a_give_up_waits_for_sends_already_handed_to_the_producer() -> None:
    h = Harness()
    h.pipeline.handover_timeout_s = 5
    await h.submit((0, 0, b"a"))
    await settle()
    revoke = asyncio.create_task(h.pipeline.on_revoked([TP(TOPIC, 0)], timeout=0.01))
    await asyncio.sleep(0.1)
    assert not revoke.done()  # the alert handed to the producer is not resolved yet
    h.broker.fail(kafka_errors.KafkaTimeoutError())  # the producer gives up on it
    await asyncio.wait_for(revoke, 1)
    assert h.sent(CHANGELOG) == [] and h.store.data == {}


@pytest.mark.asyncio
async def test_a_batch_whose_partition_was_given_up_is_dropped_unprocessed() -> None:
    h = Harness()
    h.pipeline.assigned([TP(TOPIC, 0)])

    def handle(rec: Record, txn: Transaction) -> list[Output]:
        h.pipeline.revoking.add(TP(TOPIC, 0))  # the partition is given up under the batch
        raise StaleTransaction("table[0] is not held by this worker")

    h.stage.handle = handle  # type: ignore[method-assign]
    await h.submit((0, 0, b"a"))
    await settle()
    assert h.broker.sent == [] and len(h.pipeline.chain) == 0 and h.fatal == []
    assert h.pipeline.checkpoint.batches_in_flight == 0


@pytest.mark.asyncio
async def test_state_missing_for_a_partition_still_owned_stops_the_worker() -> None:
    """The offset guard has moved past the batch: dropping it would skip its records."""
    h = Harness()
    h.pipeline.assigned([TP(TOPIC, 0)])
    h.stage.stale = True
    with pytest.raises(StaleTransaction):
        await h.submit((0, 0, b"a"))
    assert len(h.fatal) == 1 and h.broker.sent == [] and await h.pipeline.commit() == {}


@pytest.mark.asyncio
async def test_an_exception_undoes_the_records_state_and_becomes_a_dead_letter() -> None:
    h = Harness(fail_on=b"boom")
    await h.pipeline.submit(
        [Record(TOPIC, 0, 0, b"a", b"a", None), Record(TOPIC, 0, 1, b"a", b"boom", None)]
    )
    await settle()
    assert [(o.topic, o.value) for o, _ in h.broker.sent] == [
        ("out", b"1"),
        ("dead", b"RuntimeError"),
    ]
    h.broker.ack()
    await settle()
    h.ack(CHANGELOG)
    await settle()
    assert h.store.get(0, b"a") == b"1"  # the failed record's increment was undone
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 2}  # and the partition moved on


@pytest.mark.asyncio
async def test_timer_work_is_a_transaction_in_order_durable_after_its_outputs() -> None:
    h = Harness()
    await h.submit((0, 0, b"a"))

    def expire(txn: Transaction) -> list[Output]:
        seen = txn.get(h.store, 0, b"a")  # the batch before it, still in flight
        txn.put(h.store, 0, b"a", None)
        return [Output("out", b"a", b"expired at " + (seen or b"?"))]

    await h.pipeline.run_timer(expire)
    await settle()
    assert [o.value for o in h.sent("out")] == [b"1", b"expired at 1"]
    h.broker.ack(0, 1)
    await settle()
    h.ack(CHANGELOG)
    await settle()
    assert h.store.get(0, b"a") == b"1"  # the timer's delete waits for its output
    assert [o.value for o in h.sent(CHANGELOG)] == [b"1"]
    h.ack("out")
    await settle()
    assert [o.value for o in h.sent(CHANGELOG)] == [b"1", None]  # a tombstone
    h.ack(CHANGELOG)
    await settle()
    assert h.store.get(0, b"a") is None and len(h.pipeline.chain) == 0


@pytest.mark.asyncio
async def test_timer_work_given_up_before_its_outputs_are_durable_leaves_no_state() -> None:
    """A crash or rebalance between the expiry's output and its state: the state change is not
    durable, so the next run emits the same thing again (nothing is lost)."""
    h = Harness()
    h.store.write(0, {b"a": b"waiting"}, Tag(1, 1), None)

    def expire(txn: Transaction) -> list[Output]:
        if txn.get(h.store, 0, b"a") != b"waiting":
            return []
        txn.put(h.store, 0, b"a", b"emitted")
        return [Output("out", b"a", b"visit")]

    await h.pipeline.run_timer(expire)
    await settle()
    await h.pipeline.on_revoked([TP(TOPIC, 0)], timeout=0.01)
    assert h.store.get(0, b"a") == b"waiting"
    h.pipeline.assigned([TP(TOPIC, 0)])
    await h.pipeline.run_timer(expire)
    await settle()
    assert [o.value for o in h.sent("out")] == [b"visit", b"visit"]


@pytest.mark.asyncio
async def test_a_new_owner_tags_above_every_epoch_its_partition_has_seen() -> None:
    h = Harness()
    h.store.write(0, {b"x": b"1"}, Tag(4, 99), None)  # an earlier owner's state
    await h.submit((0, 0, b"a"), (1, 0, b"b"))
    await settle()
    h.ack("out")
    await settle()
    tags = {o.partition: header_tag(o.headers) for o in h.sent(CHANGELOG)}
    assert tags == {0: Tag(5, 7), 1: Tag(1, 7)}


# -- the real stages write their tables only through the transaction --------------------------

NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
FIX = Path(__file__).resolve().parents[2] / "fixtures" / "ehr"
KEY = "unit-test-key-0123456789"
SETTINGS = Settings.from_env({"TC_EHR_PATIENT_KEY": KEY, "TC_JOIN_WAIT_S": "600"})


class WatchedStore(DictStore):
    """A table that fails the test if it is written while any output handed to the broker is
    unacknowledged, or without the changelog offset of an acknowledged record: a stage writing
    its store directly (not through the transaction) is caught."""

    def __init__(self, broker: Broker, name: str) -> None:
        super().__init__(name, f"{name}-changelog")
        self.broker = broker

    def write(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        tag: Tag,
        changelog_offset: int | None,
    ) -> None:
        pending = [o.topic for o, fut in self.broker.sent if not fut.done()]
        assert pending == [], f"state written while {pending} are unacknowledged"
        assert changelog_offset is not None, "state written without its changelog record"
        acked = [
            key
            for o, fut in self.broker.sent
            if o.topic == self.changelog_topic and o.partition == partition and fut.done()
            for key, _ in o.batch
        ]
        assert set(changes) <= set(acked), "state written before its changelog record"
        super().write(partition, changes, tag, changelog_offset)


async def drive(pipeline: Pipeline, broker: Broker, records: list[Record]) -> None:
    """Submit the records one batch each, acknowledging everything as it is sent."""
    for rec in records:
        await pipeline.submit([rec])
        for _ in range(5):
            await settle()
            broker.ack()
    for _ in range(5):
        await settle()
        broker.ack()
    assert pipeline.checkpoint.unfinished == 0


@pytest.mark.asyncio
async def test_the_check_stage_writes_the_history_only_through_the_transaction() -> None:
    broker, metrics = Broker(), Metrics()
    table = WatchedStore(broker, "patient-history")
    stage = VisitProcessor(SETTINGS, metrics, clock=lambda: NOW, table=table)
    pipeline = Pipeline(stage, Publisher(broker.send, metrics), _ok, metrics)
    visits = []
    for i, (units, minutes) in enumerate([(3, 33), (2, 33), (1, 15)]):
        data = timed_visit(("97110", units, minutes))
        data.update(event_id=f"E-{i}", visit_id=f"V-{i}")
        visits.append(Record("in", 1, i, data["patient_ref"].encode(), raw(data), None))
    await drive(pipeline, broker, visits)
    assert table.writes == 3
    patient = visits[0].key or b""
    # One key per visit (compliance/state_layout.py): patient + 0x1F + visit_id.
    assert [k for k, _ in table.prefixed(1, patient + b"\x1f")] == [
        patient + f"\x1fV-{i}".encode() for i in range(3)
    ]


@pytest.mark.asyncio
async def test_the_join_writes_its_table_only_through_the_transaction() -> None:
    broker, metrics = Broker(), Metrics()
    table = WatchedStore(broker, "ehr-visit-join")
    clock = [NOW]
    joiner = VisitJoiner(SETTINGS, metrics, table, lambda: clock[0])
    pipeline = Pipeline(joiner, Publisher(broker.send, metrics), _ok, metrics)
    parser = EhrParser(SETTINGS, load_config(KEY), metrics)
    [charges] = parser.handle(
        Record(
            SETTINGS.topic_hl7_inbound, 0, 0, b"k", (FIX / "dft_p03_pt_v1001.hl7").read_bytes(), 1
        )
    )
    part = Record(SETTINGS.topic_ehr_parts, 2, 0, charges.key, charges.value, None)
    await drive(pipeline, broker, [part])
    assert table.writes == 1
    clock[0] += timedelta(seconds=601)
    pipeline.assigned([TP(SETTINGS.topic_ehr_parts, 2)])
    await pipeline.run_timer(lambda txn: joiner.tick(txn, pipeline.ready_partitions()))
    await drive(pipeline, broker, [])
    visits = [o for o, _ in broker.sent if o.topic == SETTINGS.topic_visits]
    assert len(visits) == 1 and orjson.loads(visits[0].value or b"")["parts_missing"]
    assert table.writes == 2  # the expiry's "emitted" mark, after the visit was acknowledged


async def _ok(offsets: Mapping[TP, int]) -> bool:
    return True


@pytest.mark.asyncio
async def test_durable_batches_are_not_kept_alive_by_the_ones_after_them() -> None:
    """Each batch waits for the one before it; once durable, nothing may keep a chain of every
    batch (and its transaction's values) alive: memory would grow with the stream."""
    h = Harness()
    await h.submit((0, 0, b"a"))
    first = weakref.ref(h.pipeline._last)  # type: ignore[arg-type]
    for offset in range(1, 20):
        await h.submit((0, offset, b"a"))
        for _ in range(3):
            await settle()
            h.broker.ack()
    for _ in range(3):
        await settle()
        h.broker.ack()
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 20}
    gc.collect()
    assert first() is None


@pytest.mark.asyncio
async def test_timers_wait_for_the_assignments_tables_to_be_restored() -> None:
    """faust may report a recovery a newer rebalance has overtaken (its flag `rebalancing` can
    even be cleared then): only the restore of the current assignment opens the timers."""
    h = Harness()
    h.pipeline.assigned([TP(TOPIC, 0)], awaiting_recovery=True)
    assert h.pipeline.ready_partitions() == set()
    epoch = h.pipeline.epoch
    await h.pipeline.on_revoked([TP(TOPIC, 0)], timeout=0.1)  # a new rebalance begins ...
    h.pipeline.restored(epoch)  # ... and the earlier recovery reports completion
    h.pipeline.assigned([TP(TOPIC, 0), TP(TOPIC, 1)], awaiting_recovery=True)
    assert h.pipeline.ready_partitions() == set()
    h.pipeline.restored(h.pipeline.epoch)
    assert h.pipeline.ready_partitions() == {0, 1}
