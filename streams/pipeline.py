"""The pipeline: take a batch, process it in a state transaction, publish its outputs, make its
state durable, and commit input offsets only once all of that is acknowledged.

    batch -> processor (reads/writes a Transaction) -> outputs -> publisher (acks=all)
          -> changelog records (acks=all) -> local store -> checkpoint -> commit

Faust never commits the input topic (it is declared with acks disabled, streams/app.py); this
pipeline does, through `Checkpoint`, which makes an offset committable only after every output
derived from it was acknowledged and its state changes are durable. A batch's state changes
(streams/transaction.py) are sent to the changelog only after the batch's outputs are
acknowledged, and only after every earlier batch's state is durable, so the changelog never
holds a state whose outputs a replay would still have to produce; then they are written to the
local store with the changelog offset in one write batch. Timer work (the join's expiry) is a
batch of its own without input offsets, in the same order. Up to `max_inflight` batches are in
flight while the next one is processed; when all are held (a topic refusing writes), `submit`
waits: back-pressure. A non-retriable publish error stops the worker; nothing after the failed
batch is ever committed (the checkpoint only advances through completed batches). A rebalance
or a stop that gives up on batches in flight cancels their sends and retries, abandons their
transactions and waits for what was already handed to the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.checkpoint import TP, Batch, Checkpoint
from streams.metrics import Metrics
from streams.offsets import OffsetTracker, Verdict
from streams.processor import Output, Processor, Record, guarded, record_bytes
from streams.publish import Publisher
from streams.transaction import (
    GROUP_SEP,
    Chain,
    StaleTransaction,
    Store,
    Tag,
    Transaction,
    group_of,
    tag_headers,
)

log = logging.getLogger("streams.pipeline")

#: Batches whose outputs may await the broker's acknowledgement while the next is processed.
MAX_INFLIGHT_BATCHES = 4

CommitFn = Callable[[Mapping[TP, int]], Awaitable[bool]]
#: Called once a batch is durable (the faust glue acks the batch's events there).
DurableFn = Callable[[], Awaitable[None]]
FatalFn = Callable[[BaseException], Awaitable[None]]
#: Resolves a gap: returns the first offset the broker has at or after the expected one, after
#: making the stream re-read the partition from there (a seek).
GapFn = Callable[[TP, int], Awaitable[int]]
#: How long records of a new assignment wait for the partitions' start offsets before falling
#: back on faust's committed offsets.
STARTS_WAIT_S = 30.0


#: Timer work: the stage's state as a transaction -> outputs.
TimerWork = Callable[[Transaction], list[Output]]


#: Estimated bytes of changelog records per record batch: well under the changelog topics'
#: max.message.bytes (runtime/settings.py changelog_topic_configs) and the producer's request
#: limit. Only a group of keys larger than this alone is split (`_chunks`).
CHANGELOG_BATCH_BYTES = 1 << 20


def _chunks(changes: Mapping[bytes, bytes | None]) -> list[tuple[tuple[bytes, bytes | None], ...]]:
    """A partition's changes as record batches of about CHANGELOG_BATCH_BYTES, the keys of one
    group (a key's part before GROUP_SEP: a patient's head and visits, some 100 B-20 KB) in the
    same one unless the group alone is larger (the EHR join's keys group its parts, which can be
    megabytes and need no atomicity: split, so no batch exceeds what the topic takes)."""
    limit = CHANGELOG_BATCH_BYTES
    groups: dict[bytes, list[tuple[bytes, bytes | None]]] = {}
    for key, value in changes.items():
        # A head key (no separator) joins the group of the keys it heads.
        groups.setdefault(group_of(key) or key + GROUP_SEP, []).append((key, value))
    out: list[tuple[tuple[bytes, bytes | None], ...]] = []
    current: list[tuple[bytes, bytes | None]] = []
    size = 0
    for members in groups.values():
        weight = sum(record_bytes(k, v) for k, v in members)
        if current and size + weight > limit:
            out.append(tuple(current))
            current, size = [], 0
        if weight > limit:  # only the EHR join's (large parts), which needs no atomicity
            for member in members:
                one = record_bytes(*member)
                if current and size + one > limit:
                    out.append(tuple(current))
                    current, size = [], 0
                current.append(member)
                size += one
            continue
        current.extend(members)
        size += weight
    if current:
        out.append(tuple(current))
    return out


async def _nothing() -> None:
    return None


class _Abandoned(Exception):
    """The batch's partitions were given up (a rebalance or a stop) before it was durable."""


@dataclass(eq=False)
class _Flight:
    """A batch between processing and durability."""

    batch: Batch
    txn: Transaction
    #: The batch taken before it: its state must be durable first.
    previous: _Flight | None
    #: The pipeline's fence when the batch was taken (a give-up moves the fence).
    fence: int
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    abandoned: bool = False


class Pipeline:
    def __init__(
        self,
        processor: Processor,
        publisher: Publisher,
        commit: CommitFn,
        metrics: Metrics,
        *,
        on_fatal: FatalFn | None = None,
        max_inflight: int = MAX_INFLIGHT_BATCHES,
        clock: Callable[[], float] = time.time,
        tracker: OffsetTracker | None = None,
        resolve_gap: GapFn | None = None,
        generation: Callable[[], int] = lambda: 0,
        handover_timeout_s: float = 10.0,
    ) -> None:
        self.processor = processor
        self.publisher = publisher
        self.checkpoint = Checkpoint()
        self.metrics = metrics
        self._commit = commit
        self._on_fatal = on_fatal
        self._slots = asyncio.Semaphore(max_inflight)
        self._inflight: set[asyncio.Task[None]] = set()
        self._commit_lock = asyncio.Lock()
        self._release_lock = asyncio.Lock()
        self.failure: BaseException | None = None
        self.closing = False
        self.clock = clock
        #: When a batch last became durable (or the pipeline started).
        self.last_progress = clock()
        #: Offset of the last record processed per partition (metrics and lag).
        self.last_offsets: dict[TP, int] = {}
        #: Input partitions this worker owns (None: no assignment tracking, e.g. unit tests).
        #: Records of other partitions are not processed: their state is not ours to write.
        self.owned: set[TP] | None = None
        #: Bumped at every revoke: a batch taken before a rebalance and still waiting for a
        #: slot after it is dropped whole (uncommitted, it is re-delivered to the owner).
        self.epoch = 0
        #: Partitions being revoked: still owned (their durable offsets are committed) but no
        #: longer processed.
        self.revoking: set[TP] = set()
        #: Offsets must arrive in order (streams/offsets.py); None: not checked (unit tests).
        self.tracker = tracker
        self._resolve_gap = resolve_gap
        self._resolving: set[asyncio.Task[None]] = set()
        #: Set once the current assignment's start offsets are known (or given up on).
        self._starts_read = asyncio.Event()
        self._starts_read.set()
        #: State transactions begun and not yet in the stores, in batch order.
        self.chain = Chain()
        self._last: _Flight | None = None
        #: Batches whose outputs are being handed to the producer (`_launch`).
        self._handing_over = 0
        #: Moved whenever batches in flight are given up: a batch of an earlier fence never
        #: writes its state.
        self.fence = 0
        #: The consumer group's generation (faust's), for the changelog records' tags.
        self._generation = generation
        #: Owner epoch per (table, partition) for the current assignment (transaction.Tag).
        self._epochs: dict[tuple[str, int], int] = {}
        #: How long a give-up waits for sends already handed to the producer to resolve
        #: (bounded by the producer's own request timeout: runtime/settings.py).
        self.handover_timeout_s = handover_timeout_s
        #: The current assignment's tables are restored: timer work may run.
        self.recovered = True

    async def submit(self, records: Sequence[Record], on_durable: DurableFn = _nothing) -> None:
        """Process a batch and start publishing it; returns once it is in flight. Records are
        given in consumption order. While closing, nothing is processed (the records are not
        committed, so they are re-delivered to whoever owns their partition next)."""
        if self.failure is not None:
            raise self.failure
        if self.closing or not records:
            return
        epoch = self.epoch
        await self._slots.acquire()
        if self.failure is not None or self.closing or epoch != self.epoch:
            self._slots.release()
            if self.failure is not None:
                raise self.failure
            return
        if self.owned is not None:
            owned = self.owned - self.revoking  # others' records are re-delivered to the owner
            records = [r for r in records if TP(r.topic, r.partition) in owned]
            if not records:
                self._slots.release()
                return
        if self.tracker is not None:
            records = await self._in_order(records, epoch)
            if not records or epoch != self.epoch:
                self._slots.release()
                return
        started = time.perf_counter()
        outputs: list[Output] = []
        offsets: dict[TP, int] = {}
        txn = self.chain.begin()
        try:
            for rec in records:
                outputs.extend(guarded(self.processor, rec, txn))
                offsets[TP(rec.topic, rec.partition)] = rec.offset
        except StaleTransaction as exc:
            self.chain.done(txn)
            self._slots.release()
            held = self._held({TP(r.topic, r.partition) for r in records})
            if not held:  # given up under the batch: re-delivered to the partitions' owner
                log.info("batch dropped unprocessed (%s); it is re-delivered", exc)
                return
            # A partition still ours whose state is gone: a bug. Its records would be skipped
            # (the offset guard has moved past them), so stop instead: nothing is committed past
            # them and a restart re-reads them.
            await self._fail(exc)
            raise
        self.last_offsets.update(offsets)
        await self._launch(offsets, len(records), outputs, txn, on_durable, started)

    async def run_timer(self, work: TimerWork) -> None:
        """Run timer work (the join's expiry) as a batch of its own: its state changes are a
        transaction in the same order as the input's batches, durable only after its outputs
        are. `work` runs once a slot is free, so it sees the state of every batch before it."""
        if self.failure is not None:
            raise self.failure
        if self.closing:
            return
        epoch = self.epoch
        await self._slots.acquire()
        if self.failure is not None or self.closing or epoch != self.epoch:
            self._slots.release()
            return
        txn = self.chain.begin()
        try:
            outputs = work(txn)
        except StaleTransaction as exc:
            outputs = []
            txn.rollback(0)
            log.info("timer work dropped (%s)", exc)
        except Exception as exc:  # the stage guards each key; this is a bug in between
            txn.rollback(0)
            log.error("processing_error in timer work: %s", type(exc).__name__)
            outputs = [self.processor.failed(None, exc)]
        if not outputs and not txn:
            self.chain.done(txn)
            self._slots.release()
            return
        await self._launch({}, 0, outputs, txn, _nothing, time.perf_counter())

    async def _launch(
        self,
        offsets: dict[TP, int],
        records: int,
        outputs: list[Output],
        txn: Transaction,
        on_durable: DurableFn,
        started: float,
    ) -> None:
        """Register the batch (in order), hand its outputs to the producer and start the task
        that sees them acknowledged and the state made durable. Holds a slot until then."""
        # Records of one partition go as record batches (Publisher.group); the batch's outputs
        # are these from here on, for the completion task's retries too.
        outputs = self.publisher.group(outputs)
        batch = self.checkpoint.begin(offsets, records, payload=on_durable)
        previous = self._last
        flight = _Flight(batch, txn, previous, self.fence)
        self._last = flight
        self._handing_over += 1
        try:
            # Sent here, in consumption order; awaited by the completion task. A give-up
            # meanwhile stops the hand-over.
            futures = await self.publisher.send_all(
                outputs, alive=lambda: flight.fence == self.fence
            )
        except BaseException:  # cancelled (a stop): as if never taken
            self._abandon(flight)
            self.checkpoint.drop(batch)
            if self._last is flight:
                self._last = previous
            self._slots.release()
            raise
        finally:
            self._handing_over -= 1
        if flight.fence != self.fence:  # given up while it was being handed over
            self._abandon(flight)
            self._slots.release()
            return
        task = asyncio.create_task(self._complete(flight, outputs, futures, started))
        self._inflight.add(task)
        task.add_done_callback(self._done)

    async def _in_order(self, records: Sequence[Record], epoch: int) -> list[Record]:
        """The records to process: each partition's next expected offsets only. A gap holds the
        partition back until it is re-read from the first offset the broker has. Records of a
        partition whose start is being read wait for it."""
        assert self.tracker is not None
        kept = []
        for rec in records:
            tp = TP(rec.topic, rec.partition)
            verdict, expected = self.tracker.admit(tp, rec.offset)
            if verdict is Verdict.AWAIT_START:
                await self._wait_for_starts()
                if epoch != self.epoch:
                    return []
                verdict, expected = self.tracker.admit(tp, rec.offset)
            if verdict is Verdict.PROCESS:
                kept.append(rec)
            elif verdict is Verdict.GAP:
                self._re_read(tp, expected, f"offset {rec.offset} arrived, {expected} expected")
        return kept

    def _re_read(self, tp: TP, expected: int, why: str) -> None:
        """Count and log a partition the tracker holds as lost from `expected` on, and start
        re-reading it from the broker's first offset at or after it."""
        self.metrics.input_gaps.labels(tp.topic).inc()
        log.warning(
            "%s[%d]: %s: holding the partition and re-reading it from the broker's first "
            "offset at or after %d",
            tp.topic,
            tp.partition,
            why,
            expected,
        )
        task = asyncio.create_task(self._resync(tp, expected, self.epoch))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    def check_stalled(self, highwater: Callable[[TP], int | None]) -> int:
        """Re-read partitions that have records beyond the expected offset but deliver none
        (streams/offsets.py, `STALL_S`); only while nothing is in flight, since a busy pipeline
        takes no records. Returns how many were re-read."""
        if self.tracker is None or self._resolve_gap is None or self.checkpoint.unfinished:
            return 0
        stalled = self.tracker.stalled(highwater)
        for tp, expected in stalled:
            self._re_read(
                tp, expected, f"no record delivered from offset {expected} though it has more"
            )
        return len(stalled)

    def restart_stall_clock(self) -> None:
        """Records cannot flow now (a rebalance or the tables' recovery): restart the stall
        check's clock."""
        if self.tracker is not None:
            self.tracker.restart_stall_clock()

    async def _resync(self, tp: TP, expected: int, epoch: int) -> None:
        assert self.tracker is not None and self._resolve_gap is not None
        try:
            first = await self._resolve_gap(tp, expected)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # released: the next record (or the stall check) retries
            log.warning("%s[%d]: re-read failed (%s)", tp.topic, tp.partition, exc)
            if epoch == self.epoch:
                self.tracker.resolved(tp, expected)
            return
        if epoch == self.epoch:  # a rebalance re-reads every partition from its commit anyway
            self.tracker.resolved(tp, first)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _complete(
        self,
        flight: _Flight,
        outputs: list[Output],
        futures: list[Awaitable[Any]],
        started: float,
    ) -> None:
        try:
            await self.publisher.publish(outputs, futures)
            previous, flight.previous = flight.previous, None  # no chain of every batch ever
            if previous is not None:
                await previous.settled.wait()
                if previous.abandoned:  # it may have read what that batch wrote
                    raise _Abandoned
            await self._make_durable(flight)
        except asyncio.CancelledError:
            self._abandon(flight)
            raise
        except _Abandoned:
            self._abandon(flight)
            return
        except Exception as exc:  # PublishError, or a bug in the publishing path
            self._abandon(flight)
            if self.closing:
                # A stop gave up on this batch (close()); errors now come from the producer
                # being shut down, not from the topic. The batch stays uncommitted.
                log.info("stopping: batch abandoned (%s)", type(exc).__name__)
                return
            await self._fail(exc)
            return
        flight.settled.set()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        # Batches become committable in consumption order only (checkpoint.py); the lock keeps
        # their on_durable callbacks in that order too.
        async with self._release_lock:
            for released in self.checkpoint.complete(flight.batch):
                await released.payload()
                for tp, offset in released.offsets.items():
                    self.metrics.last_offset.labels(tp.topic, str(tp.partition)).set(offset)
                self.last_progress = self.clock()
                self.metrics.last_progress.set(self.last_progress)

    async def _make_durable(self, flight: _Flight) -> None:
        """The batch's state: one changelog record per changed key (tagged with this owner),
        acknowledged; then the local stores, each partition's changes with the changelog
        offset that holds them in one write. Nothing if the batch was given up meanwhile."""
        txn = flight.txn
        if not txn:
            self.chain.done(txn)
            return
        if flight.fence != self.fence:
            raise _Abandoned
        tags: dict[tuple[Store, int], Tag] = {}
        offsets: dict[tuple[Store, int], int] = {}
        records: list[Output] = []
        for where, changes in txn.changes.items():
            store, partition = where
            tag = tags[where] = self._tag(store, partition)
            headers = tag_headers(tag)
            # One record batch per partition (or a few, for a very large transaction, never
            # splitting a group of keys): the broker appends it whole or not at all, so a crash
            # cannot leave part of a patient's changes in the changelog
            # (compliance/state_layout.py relies on it).
            for chunk in _chunks(changes):

                def acked(
                    metadata: Any, where: tuple[Store, int] = where, n: int = len(chunk)
                ) -> None:
                    first = getattr(metadata, "offset", None)  # aiokafka's RecordMetadata
                    if first is not None and first + n - 1 > offsets.get(where, -1):
                        offsets[where] = first + n - 1

                records.append(
                    Output(
                        store.changelog_topic,
                        None,
                        None,
                        partition,
                        headers,
                        on_acked=acked,
                        batch=chunk,
                    )
                )
        await self.publisher.publish(records)
        if flight.fence != self.fence:  # given up while the changelog was being written
            raise _Abandoned
        for where, changes in txn.changes.items():
            store, partition = where
            store.write(partition, changes, tags[where], offsets.get(where))
        self.metrics.state_changes.inc(sum(len(r.batch) for r in records))
        self.chain.done(txn)

    def _tag(self, store: Store, partition: int) -> Tag:
        """This owner's tag for the partition's changelog records: one epoch above what the
        partition's state had seen when this assignment first wrote it."""
        key = (store.name, partition)
        epoch = self._epochs.get(key)
        if epoch is None:
            epoch = self._epochs[key] = store.epoch(partition) + 1
        return Tag(epoch, self._generation())

    def _abandon(self, flight: _Flight) -> None:
        flight.abandoned = True
        flight.previous = None
        self.chain.done(flight.txn)
        flight.settled.set()

    async def _give_up(self, why: str, settle_s: float | None = None) -> None:
        """Give up every batch in flight: no further send or retry, no state written; their
        records stay uncommitted and are re-delivered. Then wait (bounded) for the sends already
        handed to the producer, so none of them lands after this worker let go."""
        self.fence += 1
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for txn in self.chain.clear():
            log.debug("%s: transaction %d abandoned", why, txn.seq)
        self._last = None
        self.checkpoint.abandon()
        settle_s = self.handover_timeout_s if settle_s is None else settle_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_s
        while self._handing_over and loop.time() < deadline:  # they stop at their next output
            await asyncio.sleep(0.01)
        unsettled = await self.publisher.settle(max(0.0, deadline - loop.time()))
        if unsettled:
            log.warning(
                "%s: %d send(s) already handed to the producer were not resolved within %.0fs",
                why,
                unsettled,
                settle_s,
            )

    async def _fail(self, exc: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = exc
        log.critical(
            "stopping: %s; input offsets stay committed up to the last batch whose outputs "
            "were acknowledged (everything after it will be re-delivered)",
            exc,
        )
        if self._on_fatal is not None:
            await self._on_fatal(exc)

    async def commit(self) -> dict[TP, int]:
        """Commit every offset whose outputs are durable, for partitions this worker owns;
        returns what was committed."""
        async with self._commit_lock:
            offsets = self.checkpoint.uncommitted()
            if self.owned is not None:
                offsets = {tp: o for tp, o in offsets.items() if tp in self.owned}
            if not offsets:
                return {}
            if await self._commit(offsets):
                self.checkpoint.committed(offsets)
                return offsets
            return {}

    async def wait_inflight(self, timeout: float | None) -> bool:
        """Wait until every registered batch is durable, including one still being handed to
        the producer (registered, no completion task yet); False on timeout or failure."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.checkpoint.unfinished and self.failure is None:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            tasks = list(self._inflight)
            if tasks:
                await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.01 if remaining is None else min(0.01, remaining))
        return self.failure is None

    def assigned(
        self, tps: Iterable[TP], *, awaiting_start: bool = False, awaiting_recovery: bool = False
    ) -> None:
        """The partitions this worker owns after a rebalance (`awaiting_start`: their start
        offsets are being read; their records wait until `starts_read`; `awaiting_recovery`:
        their tables are being restored, no timer work until `restored`)."""
        self.owned = set(tps)
        self.revoking.clear()
        self.recovered = not awaiting_recovery
        self._epochs.clear()
        if self.tracker is not None:
            self.tracker.assigned(self.owned, awaiting_start=awaiting_start)
            self._starts_read.set()  # wakes waiters of an earlier assignment
            self._starts_read = asyncio.Event()
            if not awaiting_start:
                self._starts_read.set()

    def starts_read(self, starts: Mapping[TP, int]) -> None:
        """The assignment's start offsets (partitions missing: not readable, faust's committed
        offset is the fallback)."""
        assert self.tracker is not None
        for tp in self.tracker.awaiting:
            if tp in starts:
                self.tracker.start_known(tp, starts[tp])
            else:
                self.tracker.start_unknown(tp)
        self._starts_read.set()

    async def _wait_for_starts(self) -> None:
        event = self._starts_read
        try:
            await asyncio.wait_for(event.wait(), STARTS_WAIT_S)
        except TimeoutError:
            if event is self._starts_read:
                log.warning(
                    "partition start offsets not read in %.0fs: falling back on faust's "
                    "committed offsets",
                    STARTS_WAIT_S,
                )
                self.starts_read({})

    async def on_revoked(self, tps: Iterable[TP], timeout: float) -> None:
        """Partitions are leaving this worker: give their batches in flight up to `timeout` to
        become durable, commit what is durable while we still own them, then forget them."""
        revoked = set(tps)
        self.epoch += 1
        self.revoking |= revoked
        self.recovered = False
        self._starts_read.set()  # a batch waiting for the old assignment's starts is dropped
        # No re-read started before this rebalance may seek after it (faust seeks every
        # partition to its committed offset when the new assignment starts).
        for task in list(self._resolving):
            task.cancel()
        if self._resolving:
            await asyncio.gather(*self._resolving, return_exceptions=True)
        if not await self.wait_inflight(timeout):
            log.warning(
                "rebalance: outputs of %d batch(es) not acknowledged within %.0fs; their "
                "records will be re-delivered to the partitions' next owner",
                self.checkpoint.batches_in_flight,
                timeout,
            )
            await self._give_up("rebalance")
        with contextlib.suppress(Exception):  # a failed commit only means re-delivery
            await self.commit()
        if self.owned is not None:
            self.owned -= revoked
        self.revoking -= revoked
        self._epochs.clear()
        self.checkpoint.forget(revoked)
        if self.tracker is not None:
            self.tracker.forget(revoked)
        for tp in revoked:
            self.last_offsets.pop(tp, None)
            self.metrics.forget_partition(tp.topic, tp.partition)
        # A stage's memory of the partitions' state (the decoded cache) is given back; kept, it
        # would only miss (streams/state_cache.py), but hold memory for partitions gone.
        forget = getattr(self.processor, "forget_partitions", None)
        if forget is not None:
            forget({tp.partition for tp in revoked})

    def restored(self, epoch: int) -> None:
        """The tables of the assignment made at `epoch` are restored (ignored when a rebalance
        has begun since)."""
        if epoch == self.epoch:
            self.recovered = True

    def _held(self, tps: set[TP]) -> set[TP]:
        """Those of `tps` this worker owns and is not giving up (all, without assignment
        tracking)."""
        if self.owned is None:
            return tps
        return tps & (self.owned - self.revoking)

    def ready_partitions(self) -> set[int]:
        """Partitions timer work may run on: owned, not being revoked, their tables restored."""
        if self.owned is None or not self.recovered:
            return set()
        return {tp.partition for tp in self.owned - self.revoking}

    async def close(self, timeout: float | None) -> bool:
        """Stop taking batches, wait (up to `timeout`) for those in flight, commit what is
        durable. Returns False when outputs were still unacknowledged (their records are not
        committed and will be re-delivered)."""
        self.closing = True
        # What is still in flight then is given up, leaving time (within `timeout`) for the
        # producer to resolve what it was already handed.
        settle = (
            self.handover_timeout_s
            if timeout is None
            else min(self.handover_timeout_s, timeout / 2)
        )
        await self.wait_inflight(None if timeout is None else timeout - settle)
        complete = self.checkpoint.unfinished == 0
        if not complete:
            log.error(
                "stopping with %d record(s) whose outputs the broker has not acknowledged; "
                "their offsets are not committed and they will be re-delivered",
                self.checkpoint.records_in_flight,
            )
            await self._give_up("stop", settle)
        try:
            await self.commit()
        except Exception as exc:
            log.warning("final commit failed (%s); uncommitted records will be re-delivered", exc)
            return False
        return complete and self.failure is None
