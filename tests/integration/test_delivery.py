"""The delivery guarantee on the real broker (docs/reliability.md, "The guarantee"): an input
offset is committed only after every output derived from it is acknowledged with acks=all,
while an output topic refuses writes, across SIGKILL, SIGTERM and the shutdown watchdog; dead
letters always fit their topic; lag series and /health follow the assignment."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.factories import raw, timed_visit
from tests.integration.harness import (
    BROKERS,
    Topics,
    Worker,
    broker_pid,
    by_topic,
    committed_offsets,
    consume,
    create_topics,
    produce,
)

pytestmark = pytest.mark.timeout(240)

# Alert ids as docs/reliability.md defines them (the contract asks only that they be
# deterministic from event_id, rule_id and line_ids): uuid5 of this namespace and
# event_id US rule_id US line ids sorted and joined by RS. Written out here, not imported,
# so the test does not share the engine's code path.
NAMESPACE = uuid.UUID("5d0f3c8e-8a64-4a8e-9d1f-7c1b2a3e4f50")


def oracle_alert_id(event_id: str, rule_id: str, line_ids: list[str]) -> str:
    return str(
        uuid.uuid5(NAMESPACE, f"{event_id}\x1f{rule_id}\x1f" + "\x1e".join(sorted(line_ids)))
    )


def overbilled_visits(n: int, tag: str) -> tuple[list[tuple[bytes | None, bytes]], set[str]]:
    """Visits that each yield exactly one alert: 97110 x3 (33 min) + 97140 x1 (7 min) bills 4
    timed units for 40 minutes, which support 3 under the CMS 8-minute rule (CMS Pub. 100-04
    Ch. 5 sec. 20.2, worked example 3): TIMED_UNITS_EXCEED_MINUTES over lines 1 and 2."""
    records, expected = [], set()
    for i in range(n):
        data = timed_visit(("97110", 3, 33), ("97140", 1, 7))
        data.update(event_id=f"E-{tag}-{i}", visit_id=f"V-{tag}-{i}", patient_ref=f"P-{i % 40}")
        records.append((data["patient_ref"].encode(), raw(data)))
        expected.add(oracle_alert_id(data["event_id"], "TIMED_UNITS_EXCEED_MINUTES", ["1", "2"]))
    return records, expected


@asynccontextmanager
async def admin_client() -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def set_max_message_bytes(topic: str, value: int, **others: str) -> None:
    """`others`: the topic's other configs to keep (AlterConfigs replaces the whole set)."""
    configs = {
        "max.message.bytes": str(value),
        **{k.replace("_", "."): v for k, v in others.items()},
    }
    async with admin_client() as admin:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])


async def stalled_setup(t: Topics, n: int, tag: str) -> tuple[list[Any], set[str]]:
    """An alert topic that refuses every alert (max.message.bytes far below an alert's size),
    the other topics as the worker creates them, and `n` overbilled visits on the input."""
    async with admin_client() as admin:
        await admin.create_topics(
            [NewTopic(t.alerts, 4, 1, topic_configs={"max.message.bytes": "64"})]
        )
    await create_topics(t)
    records, expected = overbilled_visits(n, tag)
    await produce(t.visits, records)
    return records, expected


async def run_stalled(worker: Worker, n: int, seconds: float = 8) -> None:
    """Let the worker run against the refusing topic; it processes what back-pressure allows."""
    worker.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert 0 < worker.processed() < n, "the worker should be held by back-pressure"


async def assert_nothing_committed(group: str, topic: str) -> None:
    # Every visit's alert was refused, so no visit's offset may be committed: no partition may
    # have a committed offset above 0 (the first offset; -1/absent: never committed).
    committed = await committed_offsets(group, topic)
    assert all(offset <= 0 for offset in committed.values()), committed


async def fix_and_collect(t: Topics, worker: Worker, expected: set[str]) -> None:
    await set_max_message_bytes(t.alerts, 1_048_588)
    worker.start()
    recs = await consume(
        [t.alerts],
        until=lambda rs: expected <= {orjson.loads(r.value)["alert_id"] for r in rs},
        timeout=120,
    )
    got = {a["alert_id"] for a in by_topic(recs, t.alerts)}
    assert got == expected, f"missing {len(expected - got)}, unexpected {len(got - expected)}"


@pytest.mark.asyncio
async def test_refused_outputs_are_never_committed_and_survive_sigkill(make_worker: Any) -> None:
    t = Topics.unique("refused-kill")
    n = 3000
    _, expected = await stalled_setup(t, n, "k")
    worker: Worker = make_worker(t)
    await run_stalled(worker, n)
    await assert_nothing_committed(worker.app_id, t.visits)
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    await assert_nothing_committed(worker.app_id, t.visits)
    await fix_and_collect(t, worker, expected)


@pytest.mark.asyncio
async def test_refused_outputs_sigterm_gives_up_without_committing(
    make_worker: Any, report: Any
) -> None:
    t = Topics.unique("refused-term")
    n = 3000
    _, expected = await stalled_setup(t, n, "t")
    worker: Worker = make_worker(t, TC_SHUTDOWN_TIMEOUT_S="9")
    await run_stalled(worker, n)
    started = time.monotonic()
    code = worker.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - started
    # The graceful stop waits 2/3 of the bound for the outputs, then stops without committing
    # them and says so with exit 75 (the watchdog's code: uncommitted work will be redone).
    assert code == 75, worker.tail()
    assert took < 9 + 3, took
    assert "whose outputs the broker has not acknowledged" in worker.tail()
    await assert_nothing_committed(worker.app_id, t.visits)
    await fix_and_collect(t, worker, expected)
    report(f"SIGTERM with a refusing alert topic: exit {code} after {took:.1f}s, nothing committed")


@contextmanager
def frozen_broker() -> Iterator[None]:
    pid = broker_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.asyncio
async def test_refused_outputs_and_a_hanging_shutdown_hit_the_watchdog(
    make_worker: Any, report: Any
) -> None:
    t = Topics.unique("refused-hang")
    n = 3000
    _, expected = await stalled_setup(t, n, "h")
    worker: Worker = make_worker(t, TC_SHUTDOWN_TIMEOUT_S="6")
    await run_stalled(worker, n)
    with frozen_broker():  # the broker stops answering: commit and leave-group hang
        started = time.monotonic()
        code = worker.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - started
    assert code == 75, worker.tail()
    assert 6 <= took < 6 + 4, took
    assert "graceful stop exceeded 6s" in worker.tail()
    await assert_nothing_committed(worker.app_id, t.visits)
    await fix_and_collect(t, worker, expected)
    report(f"hanging shutdown: watchdog exit {code} after {took:.1f}s, nothing committed")


@pytest.mark.asyncio
async def test_a_record_with_an_oversized_key_is_dead_lettered_and_the_worker_moves_on(
    make_worker: Any,
) -> None:
    t = Topics.unique("bigkey")
    limit = 1_048_576
    async with admin_client() as admin:  # an operator's existing dead-letter topic, 1 MiB
        await admin.create_topics(
            [NewTopic(t.deadletter, 4, 1, topic_configs={"max.message.bytes": str(limit)})]
        )
    await create_topics(t)
    big_key = b"K" * (3 * 1024 * 1024)
    after, _ = overbilled_visits(5, "after")
    worker: Worker = make_worker(t)
    worker.start()
    await produce(t.visits, [(big_key, raw(timed_visit(("97110", 2, 30)))), *after])
    recs = await consume([t.deadletter, t.checked], until=6, timeout=60)
    [letter] = [r for r in recs if r.topic == t.deadletter]
    assert len(letter.value) + len(letter.key or b"") <= limit
    body = orjson.loads(letter.value)
    assert body["reason"] == "schema_violation" and letter.key is None
    assert body["key_b64"] is None
    assert base64.b64decode(body["value_b64"])  # the value still fits and is kept
    assert "published without the original key" in body["detail"]
    assert len(by_topic(recs, t.checked)) == 5  # and the visits after it were processed
    assert worker.proc is not None and worker.proc.poll() is None


def lag_partitions(worker: Worker, topic: str) -> set[int]:
    out = set()
    for line in worker.metrics().splitlines():
        if line.startswith("therapy_compliance_consumer_lag{") and f'topic="{topic}"' in line:
            out.add(int(line.split('partition="')[1].split('"')[0]))
    return out


@pytest.mark.asyncio
async def test_lag_series_follow_the_assignment_and_an_idle_worker_is_healthy(
    make_worker: Any,
) -> None:
    t = Topics.unique("assign")
    await create_topics(t)
    app_id = f"tc-assign-{os.urandom(3).hex()}"
    a: Worker = make_worker(t, app_id=app_id)
    a.start()
    await until(lambda: lag_partitions(a, t.visits) == {0, 1, 2, 3})
    b: Worker = make_worker(t, app_id=app_id)
    b.start(wait_healthy=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            b.health_status() == 200
            and len(orjson.loads(b.get("/health")[1])["assigned_partitions"]) == 2
        ):
            break
        await asyncio.sleep(0.3)
    await asyncio.sleep(5.5)  # one lag refresh (5 s) after the rebalance
    owned_a = set(orjson.loads(a.get("/health")[1])["assigned_partitions"])
    owned_b = set(orjson.loads(b.get("/health")[1])["assigned_partitions"])
    assert owned_a | owned_b == {0, 1, 2, 3} and not owned_a & owned_b
    for _ in range(12):  # the revoked partitions' series are gone, and stay gone
        assert lag_partitions(a, t.visits) == owned_a
        assert lag_partitions(b, t.visits) == owned_b
        await asyncio.sleep(0.5)
    # A worker with nothing to do (more workers than partitions) is idle, not unhealthy.
    t1 = Topics.unique("idle")
    await create_topics(t1, partitions=1)
    app1 = f"tc-idle-{os.urandom(3).hex()}"
    c: Worker = make_worker(t1, app_id=app1, TC_PARTITIONS="1")
    d: Worker = make_worker(t1, app_id=app1, TC_PARTITIONS="1")
    c.start()
    d.start()
    await until(
        lambda: (
            sorted(orjson.loads(w.get("/health")[1])["status"] for w in (c, d)) == ["idle", "ok"]
        )
    )
    assert {c.health_status(), d.health_status()} == {200}


async def until(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.3)


@pytest.mark.asyncio
async def test_refused_status_records_are_never_committed_and_survive_sigkill(
    make_worker: Any, tmp_path: Any
) -> None:
    # The status topic (EVENTS.md "VisitStatus v1") goes through the same checkpoint: while it
    # refuses every record, no input offset is committed and no state is written (the state
    # of a batch is sent only once its outputs are acknowledged); after a SIGKILL and with the
    # topic fixed, the statuses are exactly audit's, corrections and re-judgements included.
    from tests.integration.test_state import assert_same_statuses, audit_run, collect

    t = Topics.unique("refused-status")
    records, _ = overbilled_visits(2400, "s")
    corrections = []
    for key, value in records[::4]:  # a quarter corrected: units now right (2 + 1 for 40 min)
        data = orjson.loads(value)
        data["event_id"] += "-c"
        data["services"][0]["units"] = 2
        corrections.append((key, orjson.dumps(data)))
    feed = records + corrections
    expected, statuses = audit_run(feed, None, tmp_path)
    assert sum(s["cause"]["kind"] == "correction" for s in statuses) == len(corrections)
    async with admin_client() as admin:
        await admin.create_topics(
            [
                NewTopic(
                    t.status,
                    4,
                    1,
                    topic_configs={"max.message.bytes": "64", "cleanup.policy": "compact"},
                )
            ]
        )
    await create_topics(t)
    await produce(t.visits, feed)
    worker: Worker = make_worker(t)
    await run_stalled(worker, len(feed))
    await assert_nothing_committed(worker.app_id, t.visits)
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    await assert_nothing_committed(worker.app_id, t.visits)
    await set_max_message_bytes(t.status, 1_048_588, cleanup_policy="compact")
    worker.start()
    recs = await collect(t, expected, len(feed), len(statuses))
    assert_same_statuses(recs, t, statuses)


@pytest.mark.asyncio
async def test_a_status_topic_without_compaction_is_refused_at_start(make_worker: Any) -> None:
    # EVENTS.md "VisitStatus v1": the topic is compacted, a table of visits. One created
    # earlier with cleanup.policy=delete would lose visits' current statuses at its retention:
    # the worker names the topic and the fix and exits (EXIT_CONFIG), it does not use it.
    t = Topics.unique("status-policy")
    async with admin_client() as admin:
        await admin.create_topics(
            [NewTopic(t.status, 4, 1, topic_configs={"cleanup.policy": "delete"})]
        )
    worker: Worker = make_worker(t)
    worker.start(wait_healthy=False)
    assert worker.proc is not None
    assert worker.proc.wait(60) == 78, worker.tail()
    out = worker.log_path.read_text()
    assert f"topic {t.status} has cleanup.policy=delete" in out
    assert "cleanup.policy=compact" in out and "Traceback" not in out


async def end_offsets(topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=BROKERS)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]  # create_topics: 4 partitions
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_refused_record_batches_are_never_committed_and_survive_sigkill(
    make_worker: Any,
) -> None:
    # The alert topic refuses only after the worker has published to it: its producer then
    # knows the topic, so the visits' alerts go as record batches (streams/broker.py
    # Broker.group). A batch counts as published only once the broker acknowledged it: no
    # visit whose alerts were refused is committed, and after SIGKILL and the fix every alert
    # of the uninterrupted run's set (oracle: the alert ids the visits must raise) arrives.
    # Checked by breaking it (Broker.send resolving a batch before the broker's answer): this
    # test failed in 4 of 6 runs; in the others aiokafka held the hand-over behind a refused
    # batch, so nothing was committed and nothing lost.
    t = Topics.unique("refused-batches")
    await create_topics(t)
    first, expected_first = overbilled_visits(200, "b0")
    await produce(t.visits, first)
    worker: Worker = make_worker(t)
    worker.start()
    await consume([t.alerts], until=len(expected_first), timeout=60)
    before = await end_offsets(t.visits)
    await set_max_message_bytes(t.alerts, 64)
    later, expected_later = overbilled_visits(2000, "b1")
    await produce(t.visits, later)
    # Until the worker is held (no visit taken for 3 s) and a commit interval (1 s) has passed.
    deadline, last, still = time.monotonic() + 25, -1, 0.0
    while time.monotonic() < deadline and still < 3:
        await asyncio.sleep(0.5)
        taken = worker.processed()
        still, last = (still + 0.5 if taken == last else 0.0), taken
    await asyncio.sleep(2)
    assert worker.processed() > 200, "the worker should have taken some of the later visits"
    committed = await committed_offsets(worker.app_id, t.visits)
    assert all(off <= before.get(p, 0) for p, off in committed.items()), (committed, before)
    assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
    committed = await committed_offsets(worker.app_id, t.visits)
    assert all(off <= before.get(p, 0) for p, off in committed.items()), (committed, before)
    await fix_and_collect(t, worker, expected_first | expected_later)
