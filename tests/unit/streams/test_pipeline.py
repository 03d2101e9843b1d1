"""The delivery guarantee without a broker: an input offset becomes committable only after
every output derived from it is acknowledged (streams/checkpoint.py, streams/pipeline.py), any
publish failure takes the retry path, a non-retriable one stops everything after it, and the
faust behaviours the design relies on (docs/reliability.md) are pinned here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError
from prometheus_client import generate_latest

from runtime.settings import Settings
from streams.checkpoint import TP, Checkpoint
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.processor import Output, Record, VisitProcessor
from streams.publish import Publisher, PublishError, is_retriable
from tests.factories import raw, timed_visit

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({})
TOPIC = "therapy.visit.completed.v1"
FLAGGED = raw(timed_visit(("97110", 3, 33), ("97140", 1, 7)))  # one alert + one checked


def records(partition: int, offsets: range, value: bytes = FLAGGED) -> list[Record]:
    return [Record(TOPIC, partition, o, b"P-88f1", value, None) for o in offsets]


@dataclass(frozen=True)
class Meta:
    """What aiokafka's RecordMetadata gives the pipeline: the record's offset."""

    offset: int


class Broker:
    """A fake producer: every send returns a future the test resolves (or fails) at will; an
    acknowledged record gets the next offset of its topic and partition."""

    def __init__(self) -> None:
        self.sent: list[tuple[Output, asyncio.Future[Any]]] = []
        self.raise_on_send: list[BaseException] = []
        self.offsets: dict[tuple[str, int | None], int] = {}

    async def send(self, out: Output) -> Awaitable[Any]:
        if self.raise_on_send:
            raise self.raise_on_send.pop(0)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((out, fut))
        return fut

    def ack(self, start: int = 0, stop: int | None = None) -> None:
        for out, fut in self.sent[start:stop]:
            if not fut.done():
                where = (out.topic, out.partition)
                first = self.offsets.get(where, -1) + 1
                self.offsets[where] = first + max(1, len(out.batch)) - 1
                fut.set_result(Meta(first))  # a record batch: its first offset, as aiokafka

    def fail(self, exc: BaseException, start: int = 0, stop: int | None = None) -> None:
        for _, fut in self.sent[start:stop]:
            if not fut.done():
                fut.set_exception(exc)


class Harness:
    def __init__(self, max_inflight: int = 4) -> None:
        self.broker = Broker()
        self.metrics = Metrics()
        self.commits: list[dict[TP, int]] = []
        self.durable: list[str] = []
        self.fatal: list[BaseException] = []
        processor = VisitProcessor(SETTINGS, self.metrics, clock=lambda: NOW)
        self.pipeline = Pipeline(
            processor,
            Publisher(self.broker.send, self.metrics, max_backoff_s=0.05),
            self.commit,
            self.metrics,
            on_fatal=self.on_fatal,
            max_inflight=max_inflight,
            handover_timeout_s=0.1,
        )

    async def commit(self, offsets: Any) -> bool:
        self.commits.append(dict(offsets))
        return True

    async def on_fatal(self, exc: BaseException) -> None:
        self.fatal.append(exc)

    async def submit(self, name: str, recs: list[Record]) -> None:
        async def durable() -> None:
            self.durable.append(name)

        await self.pipeline.submit(recs, durable)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_held_outputs_commit_nothing_and_release_acks_exactly_in_order() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 3)) + records(1, range(10, 12)))
    await h.submit("b2", records(0, range(3, 5)))
    await settle()
    assert len(h.broker.sent) == 2 * 7  # every output handed to the producer ...
    assert await h.pipeline.commit() == {}  # ... but nothing is acknowledged: nothing moves
    assert h.commits == [] and h.durable == []
    assert h.pipeline.checkpoint.uncommitted() == {}
    # The second batch's outputs are acknowledged first: still nothing, the first holds it.
    h.broker.ack(start=10)
    await settle()
    assert h.durable == [] and await h.pipeline.commit() == {}
    # The first batch's outputs, all but one: still nothing.
    h.broker.ack(start=0, stop=9)
    await settle()
    assert h.durable == [] and await h.pipeline.commit() == {}
    h.broker.ack()
    await settle()
    assert h.durable == ["b1", "b2"]  # acked exactly those batches, in consumption order
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 5, TP(TOPIC, 1): 12}
    assert await h.pipeline.commit() == {}  # committed once


@pytest.mark.asyncio
async def test_an_exception_raised_by_send_itself_takes_the_retry_path() -> None:
    h = Harness()
    h.broker.raise_on_send = [
        ProducerSendError("Error while sending: KafkaTimeoutError"),  # faust's wrapper ...
        kafka_errors.KafkaConnectionError("broker gone"),  # ... and aiokafka's own
    ]
    h.broker.raise_on_send[0].__cause__ = kafka_errors.KafkaTimeoutError()
    await h.submit("b1", records(0, range(0, 1)))
    for _ in range(100):
        h.broker.ack()
        await asyncio.sleep(0.01)
        if h.durable:
            break
    assert h.durable == ["b1"] and h.fatal == []
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 1}
    text = generate_latest(h.metrics.registry).decode()
    assert "therapy_compliance_output_send_retries_total 2.0" in text


@pytest.mark.asyncio
async def test_a_topic_refusing_writes_holds_the_batch_until_it_accepts() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 2)))
    await settle()
    too_big = kafka_errors.MessageSizeTooLargeError()
    for _ in range(5):  # the broker refuses every attempt for a while
        h.broker.fail(too_big)
        await asyncio.sleep(0.06)
        assert h.durable == [] and await h.pipeline.commit() == {}
    h.broker.ack()
    for _ in range(50):
        await asyncio.sleep(0.01)
        h.broker.ack()
        if h.durable:
            break
    assert h.durable == ["b1"] and h.fatal == []
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 2}


@pytest.mark.asyncio
async def test_back_pressure_bounds_the_batches_in_flight() -> None:
    h = Harness(max_inflight=2)
    await h.submit("b1", records(0, range(0, 1)))
    await h.submit("b2", records(0, range(1, 2)))
    third = asyncio.create_task(h.submit("b3", records(0, range(2, 3))))
    await asyncio.sleep(0.05)
    assert not third.done()  # both slots held by unacknowledged batches: the agent waits
    assert len(h.broker.sent) == 4  # and the third batch was not even processed
    h.broker.ack()
    await asyncio.wait_for(third, 1)
    h.broker.ack()
    await settle()
    assert h.durable == ["b1", "b2", "b3"]


@pytest.mark.asyncio
async def test_a_non_retriable_error_stops_and_nothing_after_it_is_committed() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 1)))
    await h.submit("b2", records(0, range(1, 2)))
    await h.submit("b3", records(0, range(2, 3)))
    await settle()
    h.broker.ack(start=0, stop=2)  # b1 durable
    h.broker.fail(kafka_errors.ProducerClosed(), start=2, stop=4)  # b2 can never be written
    h.broker.ack(start=4)  # b3 durable, but after b2
    await settle()
    assert len(h.fatal) == 1 and isinstance(h.fatal[0], PublishError)
    assert "ProducerClosed" in str(h.fatal[0])
    assert h.durable == ["b1"]  # b3's events are not acked either: the prefix stops at b2
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 1}
    with pytest.raises(PublishError):
        await h.submit("b4", records(0, range(3, 4)))
    assert not await h.pipeline.close(timeout=0.1)


@pytest.mark.asyncio
async def test_close_commits_what_is_durable_and_reports_what_is_not() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 2)))
    await h.submit("b2", records(1, range(0, 2)))
    await settle()
    h.broker.ack(start=0, stop=4)
    await settle()
    assert not await h.pipeline.close(timeout=0.1)  # b2 still unacknowledged
    assert h.commits == [{TP(TOPIC, 0): 2}]
    await h.submit("late", records(0, range(2, 3)))  # closing: not processed at all
    assert len(h.broker.sent) == 8


@pytest.mark.asyncio
async def test_revoked_partitions_are_committed_then_forgotten_with_their_series() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 2)) + records(3, range(0, 1)))
    await settle()
    h.broker.ack()
    await settle()
    for tp in (0, 3):
        h.metrics.lag.labels(TOPIC, str(tp)).set(5)
    await h.pipeline.on_revoked([TP(TOPIC, 3)], timeout=1)
    assert h.commits == [{TP(TOPIC, 0): 2, TP(TOPIC, 3): 1}]  # committed while still owned
    text = generate_latest(h.metrics.registry).decode()
    assert 'partition="3"' not in text  # no lag or offset series for a partition gone
    assert 'consumer_lag{partition="0"' in text
    await h.submit("b2", records(0, range(2, 3)))
    await settle()
    h.broker.ack()
    await settle()
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 3}


def test_checkpoint_never_moves_past_an_incomplete_batch() -> None:
    cp = Checkpoint()
    b1 = cp.begin({TP(TOPIC, 0): 9}, 10)
    b2 = cp.begin({TP(TOPIC, 0): 19, TP(TOPIC, 1): 4}, 15)
    cp.complete(b2)
    assert cp.uncommitted() == {} and cp.records_in_flight == 10
    cp.complete(b1)
    assert cp.uncommitted() == {TP(TOPIC, 0): 20, TP(TOPIC, 1): 5}
    cp.committed({TP(TOPIC, 0): 20})
    assert cp.uncommitted() == {TP(TOPIC, 1): 5}
    b3 = cp.begin({TP(TOPIC, 1): 7}, 2)
    cp.forget([TP(TOPIC, 1)])
    cp.complete(b3)
    assert cp.uncommitted() == {}  # a forgotten partition's late batch moves nothing


@pytest.mark.parametrize(
    ("exc", "retriable"),
    [
        (kafka_errors.MessageSizeTooLargeError(), True),  # topic max.message.bytes: fixable
        (kafka_errors.TopicAuthorizationFailedError(), True),  # an ACL change: fixable
        (kafka_errors.KafkaStorageError(), True),  # a full disk
        (kafka_errors.NotEnoughReplicasError(), True),
        (kafka_errors.KafkaTimeoutError(), True),
        (kafka_errors.KafkaConnectionError(), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (kafka_errors.ProducerClosed(), False),
        (kafka_errors.ProducerFenced(), False),
        (kafka_errors.RecordTooLargeError(), False),  # the client's own limit: same bytes
        (kafka_errors.SaslAuthenticationFailed(), False),
        (kafka_errors.UnsupportedVersionError(), False),
        (TypeError("a bug"), False),
    ],
)
def test_retriable_errors(exc: BaseException, retriable: bool) -> None:
    assert is_retriable(exc) is retriable
    wrapped = ProducerSendError("Error while sending")
    wrapped.__cause__ = exc
    assert is_retriable(wrapped) is retriable


@pytest.mark.asyncio
async def test_records_of_partitions_being_revoked_or_not_owned_are_not_processed() -> None:
    h = Harness()
    h.pipeline.assigned([TP(TOPIC, 0), TP(TOPIC, 1)])
    await h.submit("b1", records(0, range(0, 1)) + records(2, range(0, 1)))  # 2: not ours
    await settle()
    assert len(h.broker.sent) == 2  # only partition 0's alert and checked record
    # The revoke waits for b1 (held); meanwhile a batch of the partition being revoked arrives.
    revoke = asyncio.create_task(h.pipeline.on_revoked([TP(TOPIC, 1)], timeout=1))
    await settle()
    assert not revoke.done()
    await h.submit("b2", records(1, range(0, 1)))
    h.broker.ack()
    await revoke
    await settle()
    assert len(h.broker.sent) == 2 and h.durable == ["b1"]


@pytest.mark.asyncio
async def test_a_batch_waiting_across_a_rebalance_is_dropped_whole() -> None:
    h = Harness(max_inflight=1)
    h.pipeline.assigned([TP(TOPIC, 0)])
    await h.submit("b1", records(0, range(0, 1)))
    waiting = asyncio.create_task(h.submit("b2", records(0, range(1, 2))))  # no slot yet
    await settle()
    await h.pipeline.on_revoked([TP(TOPIC, 0)], timeout=0.05)  # b1 still held
    h.pipeline.assigned([TP(TOPIC, 0)])  # ... and the partition comes back to this worker
    h.broker.ack()
    await asyncio.wait_for(waiting, 1)
    await settle()
    # b2 was taken before the rebalance: not processed (faust re-delivers it from the commit).
    assert len(h.broker.sent) == 2
    assert h.pipeline.checkpoint.uncommitted() == {}


@pytest.mark.asyncio
async def test_only_owned_partitions_are_committed() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 1)) + records(1, range(0, 1)))
    await settle()
    h.broker.ack()
    await settle()
    h.pipeline.assigned([TP(TOPIC, 0)])
    assert await h.pipeline.commit() == {TP(TOPIC, 0): 1}


@pytest.mark.asyncio
async def test_close_stops_retrying_and_later_producer_errors_are_not_fatal() -> None:
    h = Harness()
    await h.submit("b1", records(0, range(0, 1)))
    await settle()
    h.broker.fail(kafka_errors.MessageSizeTooLargeError())  # the topic refuses: retrying
    assert not await h.pipeline.close(timeout=0.1)
    # The producer is shut down after the drain: a send now fails with a non-Kafka error.
    h.broker.raise_on_send = [RuntimeError("Producer service not yet started")] * 10
    await asyncio.sleep(0.2)
    assert h.fatal == [] and h.pipeline.failure is None and h.durable == []
    assert h.pipeline._inflight == set()


@pytest.mark.asyncio
async def test_close_waits_for_a_batch_still_being_handed_to_the_producer() -> None:
    h = Harness()
    gate = asyncio.Event()
    plain_send = h.broker.send

    async def slow_send(out: Output) -> Awaitable[None]:
        await gate.wait()  # the producer's buffer is full: send() itself waits
        return await plain_send(out)

    h.pipeline.publisher.send = slow_send
    submitting = asyncio.create_task(h.submit("b1", records(0, range(0, 2))))
    await settle()
    closing = asyncio.create_task(h.pipeline.close(timeout=2))
    await asyncio.sleep(0.05)
    assert not closing.done()  # the registered batch is waited for, not declared lost
    gate.set()
    await submitting
    for _ in range(50):
        h.broker.ack()
        await asyncio.sleep(0.01)
    assert await closing is True
    assert h.commits == [{TP(TOPIC, 0): 2}]


@pytest.mark.asyncio
async def test_a_dead_letter_refused_as_too_large_is_sent_smaller_not_retried_forever() -> None:
    """The dead-letter topic's limit was lowered after the worker read it: the broker refuses
    the letter as too large. It goes again in its smallest form (no original bytes); an alert
    refused the same way is held and retried (an operator fixes the topic)."""
    h = Harness()
    await h.submit("b1", [Record(TOPIC, 0, 0, b"P-88f1", b"not json", None)])
    await settle()
    [(letter, _)] = h.broker.sent
    assert letter.value is not None and b"value_b64" in letter.value
    h.broker.fail(kafka_errors.MessageSizeTooLargeError())
    for _ in range(20):
        await settle()
    [_, (smaller, _)] = h.broker.sent
    body = orjson.loads(smaller.value or b"")
    assert body["value_b64"] is None and body["key_b64"] is None and smaller.key is None
    assert body["source"]["offset"] == 0 and body["reason"] == "invalid_json"
    h.broker.ack()
    for _ in range(20):
        await settle()
    assert h.durable == ["b1"] and h.fatal == []
    text = generate_latest(h.metrics.registry).decode()
    assert "therapy_compliance_deadletters_shrunk_total 1.0" in text


@pytest.mark.asyncio
async def test_a_record_over_the_producers_own_limit_stops_the_worker_unless_a_dead_letter() -> (
    None
):
    """`send` itself raises MessageSizeTooLargeError for a record over max_request_size (the
    same bytes can never go): fatal for an alert; a dead letter goes smaller instead."""
    h = Harness()
    client_limit = ProducerSendError("Error while sending")
    client_limit.__cause__ = kafka_errors.MessageSizeTooLargeError("over max_request_size")
    h.broker.raise_on_send = [client_limit]
    await h.submit("b1", records(0, range(0, 1)))  # its alert is the first output
    for _ in range(20):
        await settle()
        h.broker.ack()  # the checked record
    assert len(h.fatal) == 1 and "TooLargeForClient" in str(h.fatal[0])
    h2 = Harness()
    h2.broker.raise_on_send = [client_limit]
    await h2.submit("b1", [Record(TOPIC, 0, 0, b"P-88f1", b"not json", None)])
    for _ in range(20):
        await settle()
        h2.broker.ack()
    assert h2.fatal == [] and h2.durable == ["b1"]
    assert orjson.loads(h2.broker.sent[0][0].value or b"")["value_b64"] is None


@pytest.mark.asyncio
async def test_a_give_up_stops_a_hand_over_in_progress() -> None:
    """A batch whose outputs are being handed to the producer when the revoke gives up hands
    over nothing more, and the revoke waits for it."""
    h = Harness()
    gate = asyncio.Event()
    send = h.broker.send

    async def slow_send(out: Output) -> Awaitable[Any]:
        await gate.wait()  # the producer's buffer is full, say
        return await send(out)

    h.pipeline.publisher.send = slow_send
    h.pipeline.assigned([TP(TOPIC, 0)])
    submit = asyncio.create_task(h.submit("b1", records(0, range(0, 5))))
    await settle()
    revoke = asyncio.create_task(h.pipeline.on_revoked([TP(TOPIC, 0)], timeout=0.01))
    await asyncio.sleep(0.05)
    assert not revoke.done()  # waiting for the hand-over in progress
    gate.set()
    await asyncio.wait_for(revoke, 1)
    await asyncio.wait_for(submit, 1)
    assert len(h.broker.sent) == 1  # the output whose send was under way, nothing after it
    assert h.durable == [] and h.commits == []


@pytest.mark.asyncio
async def test_a_cancelled_hand_over_leaves_the_pipeline_able_to_commit() -> None:
    h = Harness()
    gate = asyncio.Event()
    send = h.broker.send

    async def stuck(out: Output) -> Awaitable[Any]:
        await gate.wait()
        return await send(out)

    h.pipeline.publisher.send = stuck
    task = asyncio.create_task(h.submit("b1", records(0, range(0, 1))))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    h.pipeline.publisher.send = send
    await h.submit("b2", records(0, range(1, 2)))
    for _ in range(5):
        await settle()
        h.broker.ack()
    assert h.durable == ["b2"] and h.pipeline.checkpoint.unfinished == 0


@pytest.mark.asyncio
async def test_settled_returns_results_and_errors_in_order_and_a_cancel_spares_the_sends() -> None:
    # Publisher.publish waits for the producer's futures through `settled`. A give-up cancels
    # that wait; the producer's futures must survive it (the give-up then waits for them,
    # Publisher.settle): what asyncio.gather of asyncio.shield gave, pinned here since
    # `settled` replaced it (a plain gather would cancel them).
    from streams.publish import settled

    loop = asyncio.get_running_loop()
    done_ok, done_err, later = loop.create_future(), loop.create_future(), loop.create_future()
    done_ok.set_result("m1")
    boom = kafka_errors.KafkaTimeoutError()
    done_err.set_exception(boom)

    async def coro() -> str:
        return "m4"

    waiter = asyncio.ensure_future(settled([done_ok, done_err, later, coro()]))
    await asyncio.sleep(0)
    assert not waiter.done()
    later.set_result("m3")
    assert await waiter == ["m1", boom, "m3", "m4"]

    pending = loop.create_future()
    waiter = asyncio.ensure_future(settled([pending]))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not pending.cancelled() and not pending.done()
    pending.set_result("m5")  # resolves later, with no callback of the cancelled wait left
    await asyncio.sleep(0)
    cancelled = loop.create_future()
    cancelled.cancel("producer closed")
    result = await settled([cancelled])
    assert isinstance(result[0], asyncio.CancelledError) and result[0].args == ("producer closed",)


@pytest.mark.asyncio
async def test_settled_returns_an_exception_that_tests_false() -> None:
    # An exception object whose truth value is false is still the future's outcome (a review
    # found `exception() or result()` raising it instead).
    from streams.publish import settled

    class Falsy(kafka_errors.KafkaError):
        def __bool__(self) -> bool:
            return False

    fut = asyncio.get_running_loop().create_future()
    exc = Falsy()
    fut.set_exception(exc)
    assert (await settled([fut]))[0] is exc
