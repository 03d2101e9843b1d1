"""`/health` and the lag gauges, from the consumer's assignment and the pipeline's progress.

Status: `starting` (no partition assignment yet, 503), `idle` (assigned nothing, e.g. the 5th
worker on 4 partitions: healthy, 200), `ok` (200), `stalled` (input waits and nothing was
acknowledged for TC_STALL_AFTER_S, 503), `failed` (a publish error that retrying cannot fix,
503; the worker is stopping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Set
from typing import Any, Protocol

from streams.checkpoint import TP
from streams.metrics import Metrics
from streams.pipeline import Pipeline


class ConsumerView(Protocol):
    def assignment(self) -> Set[Any]: ...

    def highwater(self, tp: Any) -> int | None: ...


class Health:
    def __init__(
        self,
        topic: str,
        stall_after_s: float,
        metrics: Metrics,
        pipeline: Pipeline,
        consumer: Callable[[], ConsumerView],
        committed: Callable[[TP], int | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self.stall_after_s = stall_after_s
        self.metrics = metrics
        self.pipeline = pipeline
        self._consumer = consumer
        self._committed = committed
        self.clock = clock
        #: Set once the first rebalance assigned this worker its partitions (possibly none).
        self.assigned_once = False
        #: When input started waiting (lag went from 0 to > 0); a worker idle for an hour is not
        #: "stalled" the moment a record arrives.
        self._waiting_since: float | None = None

    def assigned(self) -> list[TP]:
        """The input partitions this worker owns: the pipeline's view, set by the rebalance
        signals (the consumer's own still lists revoked partitions while a rebalance runs)."""
        owned = self.pipeline.owned
        if owned is None:
            tps: Iterable[Any] = self._consumer().assignment()
            owned = {TP(tp.topic, tp.partition) for tp in tps if tp.topic == self.topic}
        return sorted(owned - self.pipeline.revoking)

    def update_lag(self) -> dict[int, int]:
        """Records waiting per owned input partition: high-water mark minus the next offset whose
        outputs are not durable yet (processed is not enough: refused outputs are waiting too).
        Partitions this worker does not own have no series."""
        consumer = self._consumer()
        assigned = self.assigned()
        self.metrics.assigned.set(len(assigned))
        lag: dict[int, int] = {}
        for tp in assigned:
            try:
                highwater = consumer.highwater(tp)
            except AssertionError:  # aiokafka: the partition left the assignment meanwhile
                highwater = None
            if highwater is None:
                continue
            durable = self.pipeline.checkpoint.position(tp)
            nxt = durable if durable is not None else (self._committed(tp) or 0)
            lag[tp.partition] = max(0, highwater - nxt)
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag[tp.partition])
        owned = {str(tp.partition) for tp in assigned}
        self.metrics.keep_partitions(self.topic, owned)
        if sum(lag.values()) == 0:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self.clock()
        return lag

    def status(self) -> tuple[bool, dict[str, Any]]:
        assigned = self.assigned()
        lag = self.update_lag()
        now = self.clock()
        quiet = now - self.pipeline.last_progress
        waiting = now - max(self.pipeline.last_progress, self._waiting_since or now)
        if self.pipeline.failure is not None:
            status = "failed"
        elif not self.assigned_once:
            status = "starting"
        elif not assigned:
            status = "idle"
        elif sum(lag.values()) > 0 and waiting > self.stall_after_s:
            status = "stalled"
        else:
            status = "ok"
        return status in ("ok", "idle"), {
            "status": status,
            "assigned_partitions": [tp.partition for tp in assigned],
            "lag": {str(p): n for p, n in lag.items()},
            "seconds_since_progress": round(quiet, 1),
        }
