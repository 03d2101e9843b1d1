"""What the worker relies on in faust-streaming 0.15.3, pinned (docs/reliability.md,
"What faust does and what we rely on"): if an upgrade changes one of these, a test fails here
instead of a guarantee failing silently in production."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

import faust
import orjson
import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

from runtime.settings import Settings
from streams.app import create_app
from streams.processor import Output
from tests.factories import raw, timed_visit


def _app(name: str) -> faust.App:
    return faust.App(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)


async def _take(method: str) -> tuple[list[bool], list[bool]]:
    """Runs one batch of 3 events through `Stream.<method>` in an agent and returns each
    event's message `acked` flag inside the loop body and once the body has returned."""
    app = _app(f"tc-pin-{method}")
    during: list[bool] = []
    seen: list[Any] = []

    @app.agent(app.topic(f"pin-{method}", value_type=bytes))
    async def take(stream: Any) -> None:
        async for events in getattr(stream, method)(3, within=0.05):
            seen.extend(events)
            during.extend(e.message.acked for e in events)

    async with take.test_context() as ctx:
        events = [await ctx.put(b"v%d" % i, key=b"k", partition=0) for i in range(3)]
        for _ in range(100):
            if len(seen) == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the agent loops back for the next batch
        after = [e.message.acked for e in events]
    return during, after


@pytest.mark.asyncio
async def test_take_events_acks_the_batch_when_the_loop_body_returns() -> None:
    # The reason the worker does not use take_events: it acks (so faust may commit) every
    # event of the batch in its `finally`, before the batch's outputs are acknowledged.
    during, after = await _take("take_events")
    assert during == [False, False, False] and after == [True, True, True]


@pytest.mark.asyncio
async def test_noack_take_leaves_acking_to_the_caller() -> None:
    during, after = await _take("noack_take")
    assert during == [False, False, False] and after == [False, False, False]


@pytest.mark.asyncio
async def test_the_input_topic_is_never_acked_so_faust_never_commits_it() -> None:
    app = create_app(Settings.from_env({"TC_APP_ID": "tc-pin-acks", "TC_STORE": "memory"}))
    app.finalize()
    agent = app.agents["check_visits"]
    assert agent.channel.acks is False  # type: ignore[attr-defined]
    # faust's conductor indexes acking topics from channel.acks; its commit covers only those.
    app.topics.add(agent.channel)  # type: ignore[arg-type]
    await app.topics._update_indices()
    assert not app.topics.acks_enabled_for("therapy.visit.completed.v1")


def test_the_transport_consumer_commits_explicit_offsets() -> None:
    # streams/app.py commits through the aiokafka transport consumer's `_commit(offsets)`.
    sig = inspect.signature(AIOKafkaConsumer._commit)
    assert list(sig.parameters) == ["self", "offsets"]
    assert inspect.iscoroutinefunction(AIOKafkaConsumer._commit)


@pytest.mark.asyncio
async def test_agent_acks_events_only_after_their_outputs_are_acknowledged() -> None:
    app = create_app(
        Settings.from_env({"TC_APP_ID": "tc-pin-agent", "TC_STORE": "memory", "TC_BATCH_SIZE": "2"})
    )
    held: list[asyncio.Future[None]] = []

    async def send(out: Output) -> Awaitable[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held.append(fut)
        return fut

    app.tc_pipeline.publisher.send = send
    agent = app.agents["check_visits"]
    body = orjson.loads(raw(timed_visit(("97110", 3, 33), ("97140", 1, 7))))
    # Four events of one visit (each a correction: a new event id), so each batch changes the
    # state; each has three outputs (its alert, checked and status records).
    values = [orjson.dumps({**body, "event_id": f"evt-{i}"}) for i in range(4)]

    async def sent(n: int) -> None:
        for _ in range(100):
            if len(held) >= n:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert len(held) == n

    async def acked() -> list[bool]:
        await asyncio.sleep(0.05)
        return [e.message.acked for e in events]

    async with agent.test_context() as ctx:
        events = [await ctx.put(v, key=b"P-88f1", partition=0) for v in values]
        # both batches processed; their alerts, checked and status records handed over, but no
        # state: a batch's changelog record is sent only once its outputs are acknowledged
        await sent(12)
        assert await acked() == [False] * 4
        assert app.tc_pipeline.checkpoint.uncommitted() == {}
        for fut in held[6:12]:  # the second batch's outputs first: nothing may be acked
            fut.set_result(None)
        assert await acked() == [False] * 4
        await sent(12)  # nor its state sent: the first batch's state must be durable first
        for fut in held[:6]:
            fut.set_result(None)
        await sent(13)  # the first batch's changelog record (one per changed key) ...
        assert held and await acked() == [False] * 4  # ... not acknowledged yet
        held[12].set_result(None)
        await sent(14)  # then the second batch's, after the first is durable
        assert await acked() == [True, True, False, False]
        held[13].set_result(None)
        for _ in range(100):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.01)
        assert [e.message.acked for e in events] == [True] * 4


# -- table internals used by streams/tables.py (the one module that reaches them) -------------


def test_faust_builds_our_stores_from_their_urls() -> None:
    """pyproject.toml registers them as `faust.stores` entry points (faust/stores/__init__.py
    `STORES.include_setuptools_namespace("faust.stores")`)."""
    from faust import stores

    from streams.tables import MemoryStore, RocksDBStore

    assert stores.by_url("tcrocksdb://") is RocksDBStore
    assert stores.by_url("tcmemory://") is MemoryStore


def test_faust_reopens_a_dropped_partition_store_so_the_adapter_never_asks_it(
    tmp_path: Any,
) -> None:
    """faust's RocksDB store keeps its open partitions in `_dbs`; its revoke pops them, and
    `_db_for_partition` opens a missing one again (faust/stores/rocksdb.py 482-493, 575-589):
    a stage going through it after a revoke would write a store faust gave up. TableStore
    reads `_dbs` only (test_tables.py)."""
    from faust.types import TP as FaustTP

    from streams.tables import TABLE_NAME

    app = create_app(Settings.from_env({"TC_APP_ID": "tc-pin-db", "TC_DATA_DIR": str(tmp_path)}))
    table = app.tables[TABLE_NAME]
    store: Any = table.data
    assert store._db_for_partition(3) is store._dbs[3]
    store.revoke_partitions(table, {FaustTP(table.changelog_topic.get_topic_name(), 3)})
    assert 3 not in store._dbs  # (closed by the garbage collector: faust keeps no reference)
    store._db_for_partition(3)
    assert 3 in store._dbs  # reopened behind the revoke's back
    # faust's persisted changelog offset: this key, the offset as decimal text.
    store.set_persisted_offset(FaustTP("x", 3), 17)
    assert store.offset_key == b"__faust\0offset__" and store._dbs[3].get(store.offset_key) == b"17"
    assert store.persisted_offset(FaustTP("x", 3)) == 17


def test_recovery_applies_changelog_batches_through_the_store() -> None:
    """faust's recovery hands each buffer of changelog events to the table, which hands it to
    its store (faust/tables/recovery.py 890, 921; faust/tables/base.py 675-681): our stores'
    `apply_changelog_batch` is where the tag order is enforced."""
    from faust.tables import base, recovery

    assert "table.apply_changelog_batch(" in inspect.getsource(recovery.Recovery)
    assert "self.data.apply_changelog_batch(" in inspect.getsource(
        base.Collection.apply_changelog_batch
    )


def test_rebalancing_is_set_at_the_revoke_and_cleared_once_tables_are_restored() -> None:
    """Timers run only while `app.rebalancing` is false (streams/app.py): faust sets it in the
    rebalance listener's synchronous revoke (faust/transport/drivers/aiokafka.py 201-211) and
    clears it at the end of a recovery of the current generation (faust/tables/recovery.py
    `on_recovery_completed`, after the generation check)."""
    from faust.tables import recovery
    from faust.transport.drivers import aiokafka as driver

    revoke = inspect.getsource(driver.ConsumerRebalanceListener.on_partitions_revoked)
    assert "app.on_rebalance_start()" in revoke
    completed = inspect.getsource(recovery.Recovery.on_recovery_completed)
    assert completed.index("consumer_generation_id != generation_id") < completed.index(
        "on_rebalance_end()"
    )
    assert "self.rebalancing = False" in inspect.getsource(faust.App.on_rebalance_end)


def test_the_producer_gives_up_on_a_send_within_its_request_timeout() -> None:
    """A give-up waits `handover_timeout_s` (2 x TC_PRODUCER_REQUEST_TIMEOUT_S + 1) for sends
    already handed to the producer: faust passes its producer_request_timeout to aiokafka as
    request_timeout_ms (faust/transport/drivers/aiokafka.py `_settings_default`); aiokafka
    gives a batch that long from its creation (the accumulator's batch_ttl) and stops retrying
    it once expired (sender `_can_retry`), and each request is bounded by the same timeout."""
    from aiokafka.producer import message_accumulator, producer, sender
    from faust.transport.drivers import aiokafka as driver

    settings = Settings.from_env({"TC_PRODUCER_REQUEST_TIMEOUT_S": "3"})
    app = create_app(settings)
    assert app.conf.producer_request_timeout == 3.0
    assert settings.handover_timeout_s == 7.0 < settings.revoke_wait_s
    assert '"request_timeout_ms": int(self.request_timeout * 1000)' in inspect.getsource(
        driver.Producer._settings_default
    )
    assert "self._request_timeout_ms / 1000" in inspect.getsource(producer.AIOKafkaProducer)
    assert "batch.expired()" in inspect.getsource(sender.SendProduceReqHandler._can_retry)
    assert "> self._ttl" in inspect.getsource(message_accumulator.MessageBatch.expired)


def test_a_record_batch_goes_through_faust_producers_aiokafka_producer_whole() -> None:
    # streams/broker.py `_send_batch`: faust's aiokafka Producer hands out its AIOKafkaProducer
    # (`_ensure_producer`), which queues a caller-built BatchBuilder as one record batch of its
    # own (`send_batch` -> `add_batch`, never merged with other records), resolved with the
    # batch's first offset; the builder holds every record appended within its size.
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator
    from faust.transport.drivers.aiokafka import Producer

    assert "_ensure_producer" in vars(Producer)
    assert inspect.signature(AIOKafkaProducer.send_batch).parameters.keys() >= {
        "batch",
        "topic",
        "partition",
    }
    assert "add_batch" in vars(MessageAccumulator)
    records = [(b"P\x1f%d" % i, b"v" * 100) for i in range(50)]
    builder = BatchBuilder(sum(len(k) + len(v) for k, v in records) + 64 * 50 + 1024, 0)
    for key, value in records:
        assert builder.append(timestamp=None, key=key, value=value, headers=[("h", b"x")])
    assert builder.record_count() == 50


def test_the_producer_places_a_keyed_record_as_broker_group_asks_it() -> None:
    # streams/broker.py `Broker.group` places records itself with what `send` uses:
    # `_partition(topic, partition, key, value, serialized_key, serialized_value)` over the
    # cluster metadata's partitions, with the producer's `_partitioner` (DefaultPartitioner
    # unless configured), and reads the partition count from `client.cluster`.
    from aiokafka import AIOKafkaProducer
    from aiokafka.cluster import ClusterMetadata
    from aiokafka.partitioner import DefaultPartitioner

    assert list(inspect.signature(AIOKafkaProducer._partition).parameters) == [
        "self",
        "topic",
        "partition",
        "key",
        "value",
        "serialized_key",
        "serialized_value",
    ]
    send = inspect.getsource(AIOKafkaProducer.send)
    assert "self._partition(" in send
    init = inspect.getsource(AIOKafkaProducer.__init__)
    assert "self._partitioner = partitioner" in init
    default = inspect.signature(AIOKafkaProducer.__init__).parameters["partitioner"].default
    assert type(default) is DefaultPartitioner
    assert "partitions_for_topic" in vars(ClusterMetadata)
    assert "self._metadata = self.client.cluster" in init


def test_recovery_asks_the_store_for_its_persisted_offset_at_every_assignment() -> None:
    # streams/tables.py RocksDBStore.persisted_offset wipes a stale store there: faust's
    # recovery takes each assigned changelog partition (active or standby) through `_add`,
    # which asks the table (and so the store) for the offset to restore from.
    from faust.tables.base import Collection
    from faust.tables.recovery import Recovery

    assert "table.persisted_offset(tp)" in inspect.getsource(Recovery._add)
    for method in (Recovery.add_active, Recovery.add_standby):
        assert "self._add(table, tp" in inspect.getsource(method)
    assert "self.data.persisted_offset(tp)" in inspect.getsource(Collection.persisted_offset)
