"""The daily run's timer under a steady feed of visits (streams/stages.py `notice_timer`,
streams/notice_run.py `run_steps`): a step runs only once the partition's input is caught up
(every record up to the consumer's highwater processed), and between steps the visits go on.

Model (fakes around the real notice_timer and run_steps; from a review of 261c1bd, where the
run stopped after one step until the next timer tick under any steady feed): visits arrive
every 5 ms (200/s); a fetcher task moves the highwater every 2 ms; an agent task processes
what was fetched 20 ms after it sees it (the batch's TC_BATCH_WITHIN_S). The run has 20 steps
of work, each blocking the loop for STEP seconds as a real step does. Asserted by counts, not
durations: the whole run is done in one tick, and every step started with the input caught up.
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
    def __init__(self, steps: int, caught_up: Any) -> None:
        self.left = steps
        self.more = False
        self.spent = 0.0
        self.steps = 0
        self.behind_at_step = 0
        self.caught_up = caught_up

    def step(self, txn: Any, partitions: set[int]) -> list[Any]:
        if not self.caught_up():
            self.behind_at_step += 1
        started = time.monotonic()
        time.sleep(STEP)  # a step blocks the loop
        self.steps += 1
        self.left -= 1
        self.more = self.left > 0
        self.spent = time.monotonic() - started
        return []

    def measure(self, partitions: set[int]) -> None:
        pass


def test_a_daily_run_under_a_steady_feed_goes_on_between_the_visits_batches() -> None:
    state = {"arrived": 0, "highwater": 0, "processed": 0}
    timers: list[Any] = []

    class Consumer:
        @staticmethod
        def highwater(tp: Any) -> int:
            return state["highwater"]

    def timer(interval: float) -> Any:
        def register(fn: Any) -> Any:
            timers.append(fn)
            return fn

        return register

    app = SimpleNamespace(consumer=Consumer(), rebalancing=False, timer=timer)

    class Pipeline:
        def __init__(self) -> None:
            self.owned = {TP(TOPIC, 0)}
            self.last_offsets: dict[TP, int] = {}

        def ready_partitions(self) -> set[int]:
            return {0}

        async def run_timer(self, work: Any) -> None:
            work(object())

    pipeline = Pipeline()
    settings = Settings.model_construct(topic_visits=TOPIC, notice_run_interval_s=60.0)
    builder = SimpleNamespace(
        app=app, settings=settings, broker=SimpleNamespace(committed=lambda tp: 0)
    )
    run = FakeRun(20, lambda: state["processed"] >= state["highwater"])
    notice_timer(builder, SimpleNamespace(pipeline=pipeline), run)  # type: ignore[arg-type]
    (daily,) = timers

    async def feed(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.005)
            state["arrived"] += 1

    async def fetcher(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.002)
            state["highwater"] = state["arrived"]

    async def agent(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.001)
            if state["highwater"] > state["processed"]:
                await asyncio.sleep(0.02)  # the batch fills for TC_BATCH_WITHIN_S
                state["processed"] = state["highwater"]
                pipeline.last_offsets[TP(TOPIC, 0)] = state["processed"] - 1

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(f(stop)) for f in (feed, fetcher, agent)]
        await asyncio.sleep(0.05)
        await daily()  # one timer tick
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert run.left == 0, f"{run.steps} step(s) this tick, {run.left} left"
    assert run.behind_at_step == 0
    assert state["arrived"] > 20  # the feed went on during the run
