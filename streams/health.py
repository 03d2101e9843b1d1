"""`/health` and the lag gauges, from the consumer's assignment and the pipeline's progress.

Status: `starting` (no partition assignment yet, 503), `idle` (assigned nothing, e.g. the 5th
worker on 4 partitions: healthy, 200), `ok` (200), `stalled` (input waits and nothing was
acknowledged for TC_STALL_AFTER_S, 503), `failed` (a publish error that retrying cannot fix,
503; the worker is stopping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.checkpoint import TP
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.transaction import Store


class ConsumerView(Protocol):
    def assignment(self) -> Set[Any]: ...

    def highwater(self, tp: Any) -> int | None: ...


@dataclass
class Stage:
    """One agent's input topics and its pipeline (the check stage, the EHR parse and join)."""

    name: str
    topics: tuple[str, ...]
    pipeline: Pipeline
    #: The tables the stage keeps its state in (through the pipeline's transactions).
    stores: tuple[Store, ...] = ()
    #: When its input started waiting (lag went from 0 to > 0): a worker idle for an hour is
    #: not "stalled" the moment a record arrives.
    waiting_since: float | None = field(default=None)


class Health:
    """The first stage's topic is the service's input (`therapy.visit.completed.v1`): `/health`
    reports its partitions and lag as `assigned_partitions` and `lag`, every stage's under
    `assignment` and `lag_by_topic`."""

    def __init__(
        self,
        stages: Sequence[Stage],
        stall_after_s: float,
        metrics: Metrics,
        consumer: Callable[[], ConsumerView],
        committed: Callable[[TP], int | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stages = list(stages)
        self.stall_after_s = stall_after_s
        self.metrics = metrics
        self._consumer = consumer
        self._committed = committed
        self.clock = clock
        #: Set once the first rebalance assigned this worker its partitions (possibly none).
        self.assigned_once = False

    def owned(self, stage: Stage) -> list[TP]:
        """The stage's input partitions this worker owns: the pipeline's view, set by the
        rebalance signals (the consumer's own still lists revoked partitions while a rebalance
        runs)."""
        owned = stage.pipeline.owned
        if owned is None:
            tps: Iterable[Any] = self._consumer().assignment()
            owned = {TP(tp.topic, tp.partition) for tp in tps if tp.topic in stage.topics}
        return sorted(owned - stage.pipeline.revoking)

    def highwater(self, tp: TP) -> int | None:
        """The partition's high-water mark; None while unknown (not assigned any more, or not
        fetched yet: aiokafka asserts the partition is assigned). Lag and the stall check both
        read it here."""
        try:
            return self._consumer().highwater(tp)
        except Exception:
            return None

    def assigned(self) -> list[TP]:
        return sorted(tp for stage in self.stages for tp in self.owned(stage))

    def update_lag(self) -> dict[TP, int]:
        """Records waiting per owned input partition: high-water mark minus the next offset whose
        outputs are not durable yet (processed is not enough: refused outputs are waiting too).
        Partitions this worker does not own have no series."""
        lag: dict[TP, int] = {}
        owned_total = 0
        for stage in self.stages:
            owned = self.owned(stage)
            owned_total += len(owned)
            stage_lag = 0
            for tp in owned:
                highwater = self.highwater(tp)
                if highwater is None:
                    continue
                durable = stage.pipeline.checkpoint.position(tp)
                nxt = durable if durable is not None else (self._committed(tp) or 0)
                lag[tp] = max(0, highwater - nxt)
                stage_lag += lag[tp]
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag[tp])
            for topic in stage.topics:
                self.metrics.keep_partitions(
                    topic, {str(tp.partition) for tp in owned if tp.topic == topic}
                )
            if stage_lag == 0:
                stage.waiting_since = None
            elif stage.waiting_since is None:
                stage.waiting_since = self.clock()
        self.metrics.assigned.set(owned_total)
        return lag

    def status(self) -> tuple[bool, dict[str, Any]]:
        lag = self.update_lag()
        assigned = self.assigned()
        now = self.clock()
        main = self.stages[0]
        stalled = [
            stage.name
            for stage in self.stages
            if stage.waiting_since is not None
            and now - max(stage.pipeline.last_progress, stage.waiting_since) > self.stall_after_s
        ]
        if any(stage.pipeline.failure is not None for stage in self.stages):
            status = "failed"
        elif not self.assigned_once:
            status = "starting"
        elif not assigned:
            status = "idle"
        elif stalled:
            status = "stalled"
        else:
            status = "ok"
        by_topic: dict[str, dict[str, int]] = {}
        for tp, n in lag.items():
            by_topic.setdefault(tp.topic, {})[str(tp.partition)] = n
        assignment: dict[str, list[int]] = {}
        for tp in assigned:
            assignment.setdefault(tp.topic, []).append(tp.partition)
        main_topic = main.topics[0]
        return status in ("ok", "idle"), {
            "status": status,
            "assigned_partitions": assignment.get(main_topic, []),
            "lag": by_topic.get(main_topic, {}),
            "seconds_since_progress": round(now - main.pipeline.last_progress, 1),
            "assignment": assignment,
            "lag_by_topic": by_topic,
            "stalled_stages": stalled,
        }
