"""`/health` and the lag gauges without a broker (streams/health.py): statuses, lag measured
from what is durable (not from what was merely processed), series only for owned partitions."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from prometheus_client import generate_latest

from runtime.settings import Settings
from streams.checkpoint import TP
from streams.health import Health, Stage
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.processor import VisitProcessor
from streams.publish import Publisher

TOPIC = "therapy.visit.completed.v1"


class FakeConsumer:
    def __init__(self) -> None:
        self.tps: set[Any] = set()
        self.highwaters: dict[Any, int] = {}

    def assignment(self) -> Set[Any]:
        return self.tps

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters.get(tp)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[Health, Pipeline, FakeConsumer, Clock, Metrics, dict[TP, int]]:
    metrics = Metrics()

    async def send(out: Any) -> Any:
        raise AssertionError("not used")

    async def commit(offsets: Any) -> bool:
        return True

    clock = Clock()
    pipeline = Pipeline(
        VisitProcessor(Settings.from_env({}), metrics),
        Publisher(send, metrics),
        commit,
        metrics,
        clock=clock,
    )
    consumer = FakeConsumer()
    committed: dict[TP, int] = {}
    health = Health(
        [Stage("check", (TOPIC,), pipeline)],
        60.0,
        metrics,
        lambda: consumer,
        committed.get,
        clock=clock,
    )
    return health, pipeline, consumer, clock, metrics, committed


def test_starting_until_the_first_assignment_then_idle_without_partitions() -> None:
    health, pipeline, *_ = setup()
    ok, body = health.status()
    assert (ok, body["status"]) == (False, "starting")
    health.assigned_once = True
    pipeline.assigned([])  # the 5th worker on 4 partitions
    ok, body = health.status()
    assert (ok, body["status"], body["assigned_partitions"]) == (True, "idle", [])


def test_lag_counts_records_whose_outputs_are_not_durable_and_stalls() -> None:
    health, pipeline, consumer, clock, _, committed = setup()
    health.assigned_once = True
    tp = TP(TOPIC, 0)
    pipeline.assigned([tp])
    consumer.highwaters[tp] = 40
    committed[tp] = 0
    # 40 records processed but their outputs refused: nothing durable, nothing committed.
    pipeline.last_offsets[tp] = 39
    ok, body = health.status()
    assert body["lag"] == {"0": 40} and (ok, body["status"]) == (True, "ok")
    clock.now += 61
    ok, body = health.status()
    assert (ok, body["status"]) == (False, "stalled")
    # Once they are durable the lag is gone and the worker is healthy again.
    batch = pipeline.checkpoint.begin({tp: 39}, 40)
    pipeline.checkpoint.complete(batch)
    pipeline.last_progress = clock.now
    ok, body = health.status()
    assert body["lag"] == {"0": 0} and (ok, body["status"]) == (True, "ok")


def test_a_worker_idle_for_long_is_not_stalled_the_moment_input_arrives() -> None:
    health, pipeline, consumer, clock, _, committed = setup()
    health.assigned_once = True
    tp = TP(TOPIC, 1)
    pipeline.assigned([tp])
    consumer.highwaters[tp] = 0
    committed[tp] = 0
    health.status()
    clock.now += 3600  # an hour without input
    consumer.highwaters[tp] = 5
    ok, body = health.status()
    assert (ok, body["status"]) == (True, "ok")


def test_failed_when_publishing_cannot_be_fixed() -> None:
    health, pipeline, *_ = setup()
    health.assigned_once = True
    pipeline.failure = RuntimeError("ProducerFenced")
    ok, body = health.status()
    assert (ok, body["status"]) == (False, "failed")


def test_lag_series_exist_only_for_owned_partitions() -> None:
    health, pipeline, consumer, _, metrics, committed = setup()
    health.assigned_once = True
    for p in range(4):
        tp = TP(TOPIC, p)
        consumer.tps.add(tp)  # the consumer's view may lag behind a rebalance
        consumer.highwaters[tp] = 10
        committed[tp] = 10
        metrics.lag.labels(TOPIC, str(p)).set(3)
    pipeline.assigned([TP(TOPIC, 2), TP(TOPIC, 3)])
    health.update_lag()
    text = generate_latest(metrics.registry).decode()
    lag_partitions = {
        line.split('partition="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("therapy_compliance_consumer_lag{")
    }
    assert lag_partitions == {"2", "3"}
