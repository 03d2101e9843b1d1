"""The worker's fetch loop (streams/transport.py) against faust-streaming 0.15.3's own, on the
same harness: a record whose hand-over a rebalance interrupts must not be marked read, records
fetched while the flow is stopped or in an earlier consumer generation are not handed over, and
the input topics are not filtered by faust's read offset (docs/reliability.md, "Our own fetch
loop"). The faust cases pin the behaviour the override exists for: if an upgrade fixes it, they
fail and the override can go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from mode import Service

from streams.transport import ORDERED_TOPICS_ATTR, Transport
from streams.transport import Consumer as OurConsumer

TP = faust.types.TP("visits", 0)


@dataclass
class Msg:
    topic: str
    offset: int
    generation_id: int = 1
    value: bytes = b""
    key: bytes = b""


@dataclass
class Batches:
    """What `getmany` returns: one list of records per call; the harness stops when empty."""

    items: list[list[Msg]]
    before_each: Callable[[int], None] = field(default=lambda i: None)


class Harness(Service):
    """The attributes and methods `_drain_messages` uses, on a real mode Service (so faust's
    loop gets mode's real `wait_first` and `sleep`)."""

    def __init__(
        self,
        batches: Batches,
        callback: Callable[[Msg], Awaitable[None]],
        ordered: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.batches = batches
        self.callback = callback
        self.suspend_flow = asyncio.Event()
        self._read_offset: dict[Any, int | None] = {TP: None}
        self._commit_every = None
        self._n_acked = 0
        self.gaps: list[tuple[int, int]] = []
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)  # type: ignore[assignment]
        self.app = SimpleNamespace(
            consumer_generation_id=1,
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            should_stop=False,
        )
        setattr(self.app, ORDERED_TOPICS_ATTR, ordered)
        self.transport = SimpleNamespace(app=self.app)
        self.consumer_stopped_errors = (RuntimeError,)
        self.calls = 0

    def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Msg]]:
        i = self.calls
        self.calls += 1
        if i >= len(self.batches.items):
            self._stopped.set()
            return _aiter([])
        self.batches.before_each(i)
        return _aiter([(TP, m) for m in self.batches.items[i]])

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((start, end))

    async def commit(self) -> None:  # pragma: no cover - commit_every is None
        raise AssertionError


async def _aiter(items: list[tuple[Any, Msg]]) -> AsyncIterator[tuple[Any, Msg]]:
    for item in items:
        yield item


Drain = Callable[[Any, Any], Awaitable[None]]
FAUST: Drain = FaustConsumer._drain_messages
OURS: Drain = OurConsumer._drain_messages


async def _run(drain: Drain, harness: Harness) -> None:
    fetcher = Service()
    await asyncio.wait_for(drain(harness, fetcher), timeout=5)


async def _interrupted_hand_over(drain: Drain) -> tuple[list[int], int | None]:
    """Offset 5's hand-over blocks (a full stream buffer); a rebalance stops the flow during
    it and the consumer is then unblocked. Returns the offsets whose hand-over completed and
    the partition's read offset afterwards."""
    done: list[int] = []
    harness: Harness

    async def callback(m: Msg) -> None:
        if m.offset == 5:
            harness.suspend_flow.set()  # the rebalance begins while 5 waits for room
            await asyncio.sleep(0.05)
            harness.suspend_flow.clear()
        done.append(m.offset)

    harness = Harness(Batches([[Msg("visits", 4), Msg("visits", 5)]]), callback)
    await _run(drain, harness)
    return done, harness._read_offset[TP]


@pytest.mark.asyncio
async def test_faust_marks_a_record_read_when_a_rebalance_cancels_its_hand_over() -> None:
    # faust/transport/consumer.py 1220-1223: wait_first(callback, suspend_flow.wait()) then
    # set_read_offset: offset 5 never reached the stream yet counts as read.
    done, read = await _interrupted_hand_over(FAUST)
    assert done == [4] and read == 5


@pytest.mark.asyncio
async def test_our_loop_completes_the_hand_over_it_started() -> None:
    done, read = await _interrupted_hand_over(OURS)
    assert done == [4, 5] and read == 5


@pytest.mark.parametrize("drain", [OURS], ids=["ours"])
@pytest.mark.asyncio
async def test_records_fetched_while_the_flow_is_stopped_are_neither_handed_over_nor_read(
    drain: Drain,
) -> None:
    done: list[int] = []

    async def callback(m: Msg) -> None:
        done.append(m.offset)

    harness: Harness
    harness = Harness(
        Batches(
            [[Msg("visits", 0), Msg("visits", 1)], [Msg("visits", 2)]],
            before_each=lambda i: harness.suspend_flow.set() if i == 1 else None,
        ),
        callback,
    )
    await _run(drain, harness)
    assert done == [0, 1] and harness._read_offset[TP] == 1


@pytest.mark.asyncio
async def test_records_of_an_earlier_generation_are_not_handed_over() -> None:
    # faust's stream would skip them (faust/streams.py 1286-1300) after they were handed over.
    done: list[int] = []

    async def callback(m: Msg) -> None:
        done.append(m.offset)
        if m.offset == 1:
            harness.app.consumer_generation_id = 2  # a rebalance completes meanwhile

    harness = Harness(
        Batches([[Msg("visits", 0), Msg("visits", 1), Msg("visits", 2, generation_id=1)]]),
        callback,
    )
    await _run(OURS, harness)
    assert done == [0, 1] and harness._read_offset[TP] == 1


async def _sought_back(drain: Drain, ordered: frozenset[str]) -> tuple[list[int], list[Any]]:
    """Offsets 0-3 are read, then (after a seek back, which faust does not see here) 2-3
    arrive again: faust's read-offset filter drops 2, keeps 3 (offset >= read offset)."""
    done: list[int] = []

    async def callback(m: Msg) -> None:
        done.append(m.offset)

    harness = Harness(
        Batches([[Msg("visits", i) for i in range(4)], [Msg("visits", 2), Msg("visits", 3)]]),
        callback,
        ordered,
    )
    await _run(drain, harness)
    return done, harness.gaps


@pytest.mark.asyncio
async def test_faust_drops_records_below_the_read_offset() -> None:
    done, _ = await _sought_back(FAUST, frozenset())
    assert done == [0, 1, 2, 3, 3]


@pytest.mark.asyncio
async def test_the_input_topics_are_not_filtered_by_the_read_offset() -> None:
    done, _ = await _sought_back(OURS, frozenset({"visits"}))
    assert done == [0, 1, 2, 3, 2, 3]


@pytest.mark.asyncio
async def test_other_topics_keep_fausts_filter_and_gap_bookkeeping() -> None:
    done: list[int] = []

    async def callback(m: Msg) -> None:
        done.append(m.offset)

    for drain in (FAUST, OURS):
        done.clear()
        harness = Harness(
            Batches([[Msg("visits", 1), Msg("visits", 4), Msg("visits", 3)]]), callback
        )
        await _run(drain, harness)
        assert (done, harness.gaps) == ([1, 4], [(2, 4)]), drain


def test_the_worker_runs_on_this_transport() -> None:
    from runtime.settings import Settings

    url = Settings().faust_broker
    assert faust.transport.by_url(url) is Transport
    assert Transport.Consumer is OurConsumer
