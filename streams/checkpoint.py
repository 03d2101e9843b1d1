"""The one place the delivery guarantee lives: which input offsets may be committed.

An input offset becomes committable only through `Checkpoint.complete`, which the pipeline calls
once the broker has acknowledged (acks=all) every output derived from that batch: alerts,
checked records, dead letters and state changes. Batches complete in any order, but offsets
advance only through a prefix of completed batches, so a committed offset never covers a record
whose outputs are not durable, whatever order the broker acknowledges them in. Pure bookkeeping:
no Kafka, no clock (the pipeline commits what `uncommitted()` returns).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class TP(NamedTuple):
    """A topic partition (faust's `TP` has the same shape and compares equal)."""

    topic: str
    partition: int


@dataclass(eq=False)
class Batch:
    """Input records processed together; `offsets` is the highest offset per partition."""

    offsets: dict[TP, int]
    records: int
    done: bool = field(default=False)
    #: Whatever the caller wants back when the batch becomes committable (its events).
    payload: Any = None


class Checkpoint:
    __slots__ = ("_committed", "_open", "_position")

    def __init__(self) -> None:
        self._open: deque[Batch] = deque()
        #: Next offset per partition: every record before it has durable outputs.
        self._position: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def begin(self, offsets: Mapping[TP, int], records: int, payload: Any = None) -> Batch:
        """Register a batch before its outputs are sent (in consumption order)."""
        batch = Batch(dict(offsets), records, payload=payload)
        self._open.append(batch)
        return batch

    def complete(self, batch: Batch) -> list[Batch]:
        """Every output of `batch` was acknowledged by the broker. Returns the batches whose
        offsets became committable by this, in consumption order (none while an earlier batch
        is still in flight)."""
        batch.done = True
        released = []
        while self._open and self._open[0].done:
            finished = self._open.popleft()
            released.append(finished)
            for tp, offset in finished.offsets.items():
                if offset + 1 > self._position.get(tp, -1):
                    self._position[tp] = offset + 1
        return released

    def uncommitted(self) -> dict[TP, int]:
        """Offsets to commit (Kafka's convention: the next offset to read) that move forward."""
        return {tp: pos for tp, pos in self._position.items() if pos > self._committed.get(tp, -1)}

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """The broker accepted these commits."""
        for tp, pos in offsets.items():
            if tp in self._position:  # not forgotten meanwhile (a rebalance)
                self._committed[tp] = max(pos, self._committed.get(tp, -1))

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions this worker no longer owns: their offsets are never committed from here
        (batches still in flight for them complete without moving anything)."""
        gone = set(tps)
        for tp in gone:
            self._position.pop(tp, None)
            self._committed.pop(tp, None)
        for batch in self._open:
            for tp in gone:
                batch.offsets.pop(tp, None)

    def drop(self, batch: Batch) -> None:
        """A batch that never got its outputs sent (its hand-over was cancelled)."""
        if batch in self._open:
            self._open.remove(batch)

    def abandon(self) -> None:
        """Every batch not yet committable is given up (a rebalance or a stop): its offsets
        are never committed from here; its records are re-delivered."""
        self._open.clear()

    def position(self, tp: TP) -> int | None:
        """Next offset of `tp` whose outputs are not (yet) known durable, None when unknown."""
        return self._position.get(tp)

    @property
    def records_in_flight(self) -> int:
        """Records whose outputs are not yet acknowledged (the back-pressure bound)."""
        return sum(b.records for b in self._open if not b.done)

    @property
    def batches_in_flight(self) -> int:
        """Batches registered and not yet committable (done ones wait for earlier ones)."""
        return len(self._open)

    @property
    def unfinished(self) -> int:
        """Batches whose outputs are not all acknowledged yet (some carry no offsets)."""
        return sum(1 for b in self._open if not b.done)
