"""What the worker relies on in faust-streaming 0.15.3, pinned (docs/reliability.md,
"What faust does and what we rely on"): if an upgrade changes one of these, a test fails here
instead of a guarantee failing silently in production."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

from streams.app import create_app
from streams.processor import Output
from streams.settings import Settings
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
    value = raw(timed_visit(("97110", 3, 33), ("97140", 1, 7)))
    async with agent.test_context() as ctx:
        events = [await ctx.put(value, key=b"P-88f1", partition=0) for _ in range(4)]
        for _ in range(100):
            if len(held) >= 12:
                break
            await asyncio.sleep(0.01)
        # both batches processed; their alerts, checked records and state writes handed over
        assert len(held) == 12
        await asyncio.sleep(0.05)
        assert [e.message.acked for e in events] == [False] * 4
        assert app.tc_pipeline.checkpoint.uncommitted() == {}
        for fut in held[6:]:  # the second batch's outputs first: nothing may be acked
            fut.set_result(None)
        await asyncio.sleep(0.05)
        assert [e.message.acked for e in events] == [False] * 4
        for fut in held[:6]:
            fut.set_result(None)
        for _ in range(100):
            if all(e.message.acked for e in events):
                break
            await asyncio.sleep(0.01)
        assert [e.message.acked for e in events] == [True] * 4
