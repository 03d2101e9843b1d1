"""Publishing outputs until the broker has acknowledged every one of them.

Any failure to publish, whether `send` raises or the future it returns fails, takes the same
path: retriable errors are retried with capped backoff for as long as they last (the batch, and
with it its input offsets, is held: back-pressure), non-retriable ones raise `PublishError`.
Retriable means the operator or the broker can fix it while the worker waits: an output topic
that refuses writes (`max.message.bytes`, an ACL change, a full disk), leader moves, timeouts,
an unreachable broker. Non-retriable means the same bytes can never be written by this process:
a closed or fenced producer, a client-side size limit, unsupported versions or codecs,
authentication failures, and any non-Kafka exception (a bug).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError

from streams.metrics import Metrics
from streams.processor import Output

log = logging.getLogger("streams.publish")

MAX_BACKOFF_S = 10.0
#: A retrying batch logs at most once per this many seconds (a stalled topic must not flood).
LOG_EVERY_S = 10.0

#: Sends one output and returns the future the broker's acknowledgement resolves.
SendFn = Callable[[Output], Awaitable[Awaitable[Any]]]
#: A batch's outputs as they are to be sent (streams/broker.py `Broker.group`: records of one
#: partition merged into record batches).
GroupFn = Callable[[Sequence[Output]], list[Output]]


def _alone(outputs: Sequence[Output]) -> list[Output]:
    return list(outputs)


def _records(out: Output) -> int:
    """Kafka records in an output: a record batch's, or one."""
    return len(out.batch) or 1


class PublishError(Exception):
    """An output can never be published by this process; the worker must stop."""


class GivenUp(Exception):
    """Not handed to the producer: its batch was given up meanwhile (a rebalance, a stop)."""


class TooLargeForClient(Exception):
    """`send` itself refused the record: over the producer's own max_request_size (aiokafka
    raises MessageSizeTooLargeError then, aiokafka/producer/producer.py `_serialize`), so the
    same bytes can never be sent by this process. (The broker's refusal of a record over a
    topic's max.message.bytes is the same error type, from the future: retriable, an operator
    can raise the topic's limit.)"""


NON_RETRIABLE: tuple[type[BaseException], ...] = (
    TooLargeForClient,
    kafka_errors.ProducerClosed,
    kafka_errors.ProducerFenced,
    kafka_errors.RecordTooLargeError,
    kafka_errors.IllegalStateError,
    kafka_errors.IllegalArgumentError,
    kafka_errors.KafkaConfigurationError,
    kafka_errors.UnsupportedCodecError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.UnrecognizedBrokerVersion,
    kafka_errors.IncompatibleBrokerVersion,
    kafka_errors.InvalidTopicError,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)


def root_cause(exc: BaseException) -> BaseException:
    # faust wraps aiokafka's errors raised by send() in ProducerSendError ("from exc").
    if isinstance(exc, ProducerSendError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_retriable(exc: BaseException) -> bool:
    cause = root_cause(exc)
    if isinstance(cause, NON_RETRIABLE):
        return False
    return isinstance(cause, kafka_errors.KafkaError | OSError | asyncio.TimeoutError)


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


#: The broker's and the client's "record too large": a dead letter is then re-sent smaller.
TOO_LARGE = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    TooLargeForClient,
)


async def settled(awaitables: Sequence[Awaitable[Any]]) -> list[Any]:
    """Each send's result or exception, in order, once all are resolved. Cancelling this (a
    give-up) leaves the producer's own futures alone, which a give-up then waits for
    (`settle`), the records being already handed over: as `gather` of `shield`s, with one
    callback per future instead of a shield and a gather wrapper each (a batch has ~1,500)."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    waiting = [f for f in futures if not f.done()]
    if waiting:
        all_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = len(waiting)

        def one_done(_: asyncio.Future[Any]) -> None:
            nonlocal left
            left -= 1
            if left == 0 and not all_done.done():
                all_done.set_result(None)

        for f in waiting:
            f.add_done_callback(one_done)
        try:
            await all_done
        finally:
            if left:  # cancelled: the futures outlive this wait, its callbacks do not
                for f in waiting:
                    f.remove_done_callback(one_done)
    return [_outcome(f) for f in futures]


def _outcome(future: asyncio.Future[Any]) -> Any:
    """A resolved future's result, or the exception it holds, as `gather(...,
    return_exceptions=True)` gives it (a cancelled one's error keeps its message)."""
    try:
        return future.result()
    except BaseException as exc:  # held by the future: returned, as gather does
        return exc


class Publisher:
    def __init__(
        self,
        send: SendFn,
        metrics: Metrics,
        max_backoff_s: float = MAX_BACKOFF_S,
        group: GroupFn = _alone,
    ):
        self.send = send
        self.group = group
        self.metrics = metrics
        self.max_backoff_s = max_backoff_s
        self._last_log = 0.0
        #: Sends handed to the producer and not resolved yet (a give-up waits for them).
        self._outstanding: set[asyncio.Future[Any]] = set()

    async def send_all(
        self, outputs: Sequence[Output], alive: Callable[[], bool] = lambda: True
    ) -> list[Awaitable[Any]]:
        """Hand the outputs to the producer, in order; stops handing over (the rest fail) once
        `alive()` is false (their batch was given up while they were being handed over)."""
        futures: list[Awaitable[Any]] = []
        for out in outputs:
            if not alive():
                futures.append(_failed(GivenUp("the batch was given up")))
                continue
            try:
                fut = await self.send(out)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # raised by send itself: same path as a failed future
                if isinstance(root_cause(exc), kafka_errors.MessageSizeTooLargeError):
                    tagged = TooLargeForClient(f"{out.topic}: {root_cause(exc)}")
                    tagged.__cause__ = exc
                    exc = tagged
                fut = _failed(exc)
            if isinstance(fut, asyncio.Future) and not fut.done():
                self._outstanding.add(fut)
                fut.add_done_callback(self._outstanding.discard)
            futures.append(fut)
        return futures

    async def settle(self, timeout: float) -> int:
        """Wait up to `timeout` for every send handed to the producer to resolve (acknowledged
        or failed: the producer gives up on its own after its request timeout); returns how
        many did not."""
        pending = set(self._outstanding)
        if pending:
            _done, pending = await asyncio.wait(pending, timeout=timeout)
        return len(pending)

    async def publish(
        self, outputs: Sequence[Output], futures: list[Awaitable[Any]] | None = None
    ) -> None:
        """Return once the broker acknowledged every output (sending them first unless their
        futures are given); retry what failed with backoff; raise PublishError on an error
        that retrying cannot fix. Duplicates a retry may cause carry the same ids."""
        pending = list(outputs)
        backoff = 0.1
        while pending:
            if futures is None:
                futures = await self.send_all(pending)
            results = await settled(futures)
            futures = None
            failed = []
            for out, result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    failed.append((out, result))
                elif out.on_acked is not None:
                    out.on_acked(result)
            if not failed:
                return
            # A dead letter refused as too large goes again in its smallest form (the same
            # bytes would be refused forever); everything else is retried or fatal.
            smaller = [
                o.shrink()
                for o, r in failed
                if o.shrink is not None and isinstance(root_cause(r), TOO_LARGE)
            ]
            self.metrics.deadletters_shrunk.inc(len(smaller))
            failed = [
                (o, r)
                for o, r in failed
                if o.shrink is None or not isinstance(root_cause(r), TOO_LARGE)
            ]
            fatal = [r for _, r in failed if not is_retriable(r)]
            if fatal:
                cause = root_cause(fatal[0])
                topics = sorted({o.topic for o, r in failed if r in fatal})
                raise PublishError(
                    f"cannot publish to {', '.join(topics)}: {type(cause).__name__} "
                    f"({cause}) cannot be fixed by retrying"
                ) from cause
            pending = smaller + [o for o, _ in failed]
            if not failed:
                continue
            held = sum(_records(o) for o, _ in failed)
            self.metrics.send_retries.inc(held)
            now = time.monotonic()
            if now - self._last_log >= LOG_EVERY_S:
                self._last_log = now
                errors = sorted({type(root_cause(r)).__name__ for _, r in failed})
                topics = sorted({o.topic for o, _ in failed})
                log.warning(
                    "%d of %d output records not acknowledged by the broker (%s on %s); "
                    "holding the batch and its input offsets, retrying in %.1fs",
                    held,
                    sum(map(_records, pending)),
                    ", ".join(errors),
                    ", ".join(topics),
                    backoff,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
