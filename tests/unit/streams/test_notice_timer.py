"""The daily run's timer under a steady feed of visits (streams/stages.py `notice_timer`,
streams/notice_run.py `run_steps`): a step runs only once the owned partitions' inputs are
caught up (every record up to the consumer's highwater processed), the visits go on between
steps, and the run is not cut short by the gate.

Model (the real notice_timer and run_steps around fakes; written by two reviews of this
change, each test failing on the version it reviewed): visits arrive in bursts of 10 every
50 ms (200/s) on the busy partition; a fetcher task moves its highwater every 2 ms; an agent
task processes what was fetched 20 ms after it sees it (the batch's TC_BATCH_WITHIN_S), so the
worker is caught up for part of every 50 ms (a feed with no such moments postpones the run by
design: docs/rules.md "Daily run"). The busy partition has 20 steps of run to do, each
blocking the loop for STEP seconds as a real step does. Asserted by counts, not durations: the
whole run done in one tick (its patience, TC_NOTICE_RUN_INTERVAL_S, is 5 s here), no step
started while the input was behind, and the tick ends.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from runtime.settings import Settings
from streams.checkpoint import TP
from streams.stages import notice_timer

TOPIC = "visits"
STEP = 0.005


class FakeRun:
    """Partition `busy` has `steps` steps of run left; every other partition has none."""

    def __init__(self, steps: int, busy: int, caught_up: Any) -> None:
        self.left = steps
        self.busy = busy
        self.more = False
        self.spent = 0.0
        self.steps = 0
        self.behind_at_step = 0
        self.caught_up = caught_up
        self.calls: list[set[int]] = []

    def step(self, txn: Any, partitions: set[int]) -> list[Any]:
        self.calls.append(set(partitions))
        started = time.monotonic()
        self.more = False
        if self.busy in partitions and self.left > 0:
            if not self.caught_up():
                self.behind_at_step += 1
            time.sleep(STEP)
            self.steps += 1
            self.left -= 1
            self.more = self.left > 0
        self.spent = time.monotonic() - started
        return []

    def measure(self, partitions: set[int]) -> None:
        pass


def _model(
    partitions: set[int],
    busy: int,
    slot_wait: float = 0.0,
    limit: float = 20.0,
    patience: float = 5.0,
) -> tuple[FakeRun, dict[str, Any]]:
    """Runs one timer tick (at most `limit` seconds); state["ended"]: whether it returned,
    state["timer_work"]: how many times run_timer called work()."""
    state: dict[str, Any] = {
        "arrived": 0,
        "highwater": 0,
        "processed": 0,
        "ended": False,
        "timer_work": 0,
    }
    timers: list[Any] = []

    class Consumer:
        @staticmethod
        def highwater(tp: Any) -> int:
            return state["highwater"] if tp.partition == busy else 0  # others idle

    def timer(interval: float) -> Any:
        def register(fn: Any) -> Any:
            timers.append(fn)
            return fn

        return register

    app = SimpleNamespace(consumer=Consumer(), rebalancing=False, timer=timer)

    class Pipeline:
        def __init__(self) -> None:
            self.owned = {TP(TOPIC, p) for p in partitions}
            self.last_offsets: dict[TP, int] = {}

        def ready_partitions(self) -> set[int]:
            return set(partitions)

        async def run_timer(self, work: Any) -> None:
            if slot_wait:
                await asyncio.sleep(slot_wait)  # a slot frees up (batches in flight)
                state["arrived"] += 1  # and meanwhile a visit arrived and was fetched
                state["highwater"] = state["arrived"]
            state["timer_work"] += 1
            work(object())

    pipeline = Pipeline()
    settings = Settings.model_construct(topic_visits=TOPIC, notice_run_interval_s=patience)
    builder = SimpleNamespace(
        app=app, settings=settings, broker=SimpleNamespace(committed=lambda tp: 0)
    )
    run = FakeRun(20, busy, lambda: state["processed"] >= state["highwater"])
    notice_timer(builder, SimpleNamespace(pipeline=pipeline), run)  # type: ignore[arg-type]
    (daily,) = timers

    async def feed(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
            state["arrived"] += 10  # a burst: the worker is caught up between bursts

    async def fetcher(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.002)
            state["highwater"] = state["arrived"]

    async def agent(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.001)
            if state["highwater"] > state["processed"]:
                await asyncio.sleep(0.02)
                state["processed"] = state["highwater"]
                pipeline.last_offsets[TP(TOPIC, busy)] = state["processed"] - 1

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(f(stop)) for f in (feed, fetcher, agent)]
        await asyncio.sleep(0.05)
        try:
            await asyncio.wait_for(daily(), limit)  # one timer tick
            state["ended"] = True
        except TimeoutError:
            pass
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    return run, state


def test_a_run_under_a_steady_feed_is_done_in_one_tick_between_the_visits() -> None:
    # 261c1bd: the sleep between steps let the fetcher move the highwater, and the run
    # stopped after one step until the next tick (b6f7687's loop after one or a few).
    run, state = _model({1}, busy=1)
    assert state["ended"]
    assert run.behind_at_step == 0
    assert run.left == 0, f"{run.steps} step(s) this tick, {run.left} left"
    assert state["arrived"] > 20  # the feed went on during the run


def test_an_idle_partition_caught_up_does_not_end_a_busy_partitions_run() -> None:
    # Partition 0: idle and its run done. Partition 1: steady feed, 20 steps to run.
    run, _ = _model({0, 1}, busy=1)
    assert run.behind_at_step == 0
    assert run.left == 0, f"{run.steps} step(s) this tick, {run.left} left; calls {run.calls}"


def test_a_run_whose_every_attempt_falls_behind_in_its_slot_wait_ends_the_tick() -> None:
    # run_timer awaits 3 ms for a slot (the real pipeline.run_timer awaits its semaphore)
    # before work() reads the gate again, and here a visit is fetched during every such wait:
    # work() never steps (Step.BEHIND). 0f9ca33 started its patience over at each attempt, so
    # the tick never ended (measure() never reached); now those attempts count toward the
    # patience since the last step (0.5 s here) and the next tick tries again.
    run, state = _model({1}, busy=1, slot_wait=0.003, limit=5.0, patience=0.5)
    assert state["ended"], (
        f"daily() still running after 5 s: {run.steps} step(s) done, "
        f"{state['timer_work']} run_timer calls, {state['arrived']} visits"
    )
    assert run.steps == 0 and state["timer_work"] > 1
