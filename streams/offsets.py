"""Every input offset is processed in order, or not committed past: a guard against records the
stream layer fails to deliver.

faust-streaming 0.15.3 can drop a record around a rebalance (observed on the real broker: a
worker taking over a partition received 1110 then 1112; the record at 1111 never reached the
agent, and since the checkpoint advances on what was processed, the offset would have been
committed past it: tests/integration/test_reliability.py, two workers, SIGTERM). So the pipeline
checks each record against the next offset it expects per partition:

- the first record of a partition after an assignment is expected at the partition's start,
  read from the broker at the assignment: the group's committed offset (where faust seeks to),
  else the first offset the broker has; records that arrive before it is known wait for it (the
  agent waits, so the fetcher does too);
- a record below the expected offset was already processed (a re-delivery): skipped;
- a record above it is a gap: it and the partition's later records are held back, the broker is
  asked what the first existing offset at or after the expected one is (a legitimate gap, e.g.
  a transaction marker, has no record), and the partition is re-read from there;
- after such a re-read (a seek), records fetched before it can still arrive: until the record at
  the sought offset does, others are skipped as stale rather than taken for a new gap, so one
  gap costs one seek. Should the sought record not come within `SEEK_GRACE_S` while others do,
  the gap is resolved again;
- a partition that has records beyond the expected offset (its high watermark) but delivers
  none for `STALL_S` while the pipeline has nothing in flight is re-read from the expected
  offset like a gap. This catches a loss no later record reveals: faust's `flow_control.resume()`
  at the end of a rebalance clears the streams' queues (mode's `FlowControlQueue`,
  `clear_on_resume=True`), dropping records fetched after the rebalance's seek; when those were
  the partition's last records, nothing else would ever arrive (seen on the real broker: a
  restarted worker fetched a whole backlog, lost it to the clear, and sat idle with lag).

`OffsetTracker` is the pure bookkeeping; `OffsetProbe` asks the broker (its own consumer, no
group, so it moves nobody's offsets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from enum import Enum
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.checkpoint import TP

log = logging.getLogger("streams.offsets")

#: How long records other than the sought one count as fetched before the seek.
SEEK_GRACE_S = 10.0
#: How long a partition with records beyond its expected offset may deliver nothing (with
#: nothing in flight) before it is re-read from the expected offset.
STALL_S = 10.0


class Verdict(Enum):
    PROCESS = "process"
    DUPLICATE = "duplicate"  # already processed: skip
    #: A gap of this partition is being resolved: skip the record, the partition is re-read.
    RESOLVING = "resolving"
    GAP = "gap"  # a gap was just found: skip, resolve it (probe + seek)
    #: The partition's start offset is being read: wait for it, then ask again.
    AWAIT_START = "await_start"


class OffsetTracker:
    """Next expected offset per partition of the current assignment."""

    __slots__ = (
        "_active",
        "_awaiting",
        "_baseline",
        "_clock",
        "_expected",
        "_resolving",
        "_seen",
        "_sought",
    )

    def __init__(
        self,
        baseline: Callable[[TP], int | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: Fallback for a partition whose start was not read at the assignment: the committed
        #: offset faust read when it sought after the rebalance.
        self._baseline = baseline
        self._expected: dict[TP, int | None] = {}
        self._resolving: set[TP] = set()
        #: Partitions of the new assignment whose start (committed offset, else the log's first
        #: offset) is being read: their records wait.
        self._awaiting: set[TP] = set()
        #: Partitions re-read from their expected offset (a seek), with the time until which
        #: other records are taken as fetched before the seek.
        self._sought: dict[TP, float] = {}
        #: When each partition last delivered a record (or was assigned, started, re-read).
        self._seen: dict[TP, float] = {}
        self._clock = clock
        #: Off until the first assignment (records without one: faust's agent test context).
        self._active = False

    def assigned(self, tps: Iterable[TP], *, awaiting_start: bool = False) -> None:
        """A new assignment: faust re-reads each partition from its committed offset."""
        self._active = True
        self._expected = {tp: None for tp in tps}
        self._resolving.clear()
        self._awaiting = set(self._expected) if awaiting_start else set()
        self._sought.clear()
        now = self._clock()
        self._seen = dict.fromkeys(self._expected, now)

    def start_known(self, tp: TP, offset: int) -> None:
        """The partition's start was read: its first record is expected there."""
        if tp in self._awaiting:
            self._awaiting.discard(tp)
            self._expected[tp] = offset
            self._seen[tp] = self._clock()

    def start_unknown(self, tp: TP) -> None:
        """The start could not be read: the first record falls back on `baseline` (faust's
        committed offset), else on the broker's first offset."""
        self._awaiting.discard(tp)
        self._seen[tp] = self._clock()

    @property
    def awaiting(self) -> frozenset[TP]:
        return frozenset(self._awaiting)

    def stalled(self, highwater: Callable[[TP], int | None]) -> list[tuple[TP, int]]:
        """Partitions that have records from their expected offset on (`highwater`: the
        partition's end offset, None if not known) yet delivered none for `STALL_S`: each is
        marked as being resolved and returned with its expected offset, to be re-read from it.
        The caller asks only while nothing is in flight (a busy pipeline takes no records)."""
        now = self._clock()
        out = []
        for tp, known in self._expected.items():
            if tp in self._resolving or tp in self._awaiting:
                continue
            # Start not read and no record yet: faust's committed offset, else the log's start.
            expected = known if known is not None else (self._baseline(tp) or 0)
            end = highwater(tp)
            if end is None or end <= expected or now - self._seen.get(tp, now) < STALL_S:
                continue
            self._resolving.add(tp)
            self._expected[tp] = expected
            self._seen[tp] = now
            out.append((tp, expected))
        return out

    def restart_stall_clock(self) -> None:
        """Records cannot flow now (a rebalance, the tables' recovery): no partition counts as
        silent before `STALL_S` from now."""
        now = self._clock()
        for tp in self._seen:
            self._seen[tp] = now

    def admit(self, tp: TP, offset: int) -> tuple[Verdict, int]:
        """What to do with the record at `offset`, and the offset expected for `tp`."""
        if not self._active:
            return Verdict.PROCESS, offset
        self._seen[tp] = self._clock()
        if tp in self._awaiting:
            return Verdict.AWAIT_START, offset
        if tp in self._resolving:
            return Verdict.RESOLVING, self._expected.get(tp) or 0
        expected = self._expected.get(tp)
        if expected is None:
            expected = self._baseline(tp)
            if expected is None:  # not known: the broker's first offset decides
                self._resolving.add(tp)
                self._expected[tp] = 0
                return Verdict.GAP, 0
            self._expected[tp] = expected
        if offset == expected:
            self._expected[tp] = offset + 1
            self._sought.pop(tp, None)
            return Verdict.PROCESS, offset
        if offset < expected:
            self._expected[tp] = expected
            return Verdict.DUPLICATE, expected
        deadline = self._sought.get(tp)
        if deadline is not None and self._clock() < deadline:
            return Verdict.RESOLVING, expected  # fetched before the seek: the sought record follows
        self._sought.pop(tp, None)
        self._resolving.add(tp)
        self._expected[tp] = expected
        return Verdict.GAP, expected

    def resolved(self, tp: TP, first_existing: int) -> None:
        """The broker's first offset at or after the expected one: re-read from there. Only
        for a resolution still pending (a new assignment forgets older ones)."""
        if tp in self._expected and tp in self._resolving:
            self._expected[tp] = first_existing
            self._sought[tp] = self._clock() + SEEK_GRACE_S
            self._seen[tp] = self._clock()
        self._resolving.discard(tp)

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._expected.pop(tp, None)
            self._resolving.discard(tp)
            self._awaiting.discard(tp)
            self._sought.pop(tp, None)
            self._seen.pop(tp, None)


async def _start_or_discard(
    start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]]
) -> None:
    """Start a client; if that fails or is cancelled, stop it again, so the caller never
    keeps a half-started one (the next call starts afresh)."""
    try:
        await start()
    except BaseException:
        with contextlib.suppress(Exception):
            await stop()
        raise


class OffsetProbe:
    """Asks the broker for the first offset at or after a given one, with a consumer of its own
    (no group, no commits)."""

    def __init__(self, bootstrap_servers: list[str], security: dict[str, Any]) -> None:
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "enable_auto_commit": False,
            "group_id": None,
            "max_partition_fetch_bytes": 64 * 1024,  # the first record is all we look at
            # A start deleted meanwhile (retention) resets to the log's first offset, never to
            # its end (aiokafka's default, "latest", would skip everything in between).
            "auto_offset_reset": "earliest",
            **security,
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def starts(self, group: str, tps: list[TP]) -> dict[TP, int]:
        """Where each partition's processing starts: the group's committed offset, else the
        log's first offset (faust's consumers reset to the earliest)."""
        if not tps:
            return {}
        async with self._lock:
            if self._admin is None:
                admin_config = {
                    k: v
                    for k, v in self._config.items()
                    if k in ("bootstrap_servers", "security_protocol", "ssl_context")
                    or k.startswith("sasl_")
                }
                admin = AIOKafkaAdminClient(**admin_config)
                await _start_or_discard(admin.start, admin.close)
                self._admin = admin
            parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
            committed = await self._admin.list_consumer_group_offsets(group, partitions=parts)
        out: dict[TP, int] = {}
        missing: list[TP] = []
        for tp in tps:
            meta = committed.get(TopicPartition(tp.topic, tp.partition))
            if meta is not None and meta.offset >= 0:
                out[tp] = int(meta.offset)
            else:
                missing.append(tp)
        for tp in missing:
            out[tp] = await self.first_offset(tp, 0)
        return out

    async def first_offset(self, tp: TP, at_least: int, timeout_s: float = 10.0) -> int:
        """The offset of the first record at or after `at_least` (`at_least` itself when the
        broker has no record there yet, i.e. at the end of the log)."""
        async with self._lock:
            if self._consumer is None:
                fresh = AIOKafkaConsumer(**self._config)
                await _start_or_discard(fresh.start, fresh.stop)
                self._consumer = fresh
            consumer = self._consumer
            partition = TopicPartition(tp.topic, tp.partition)
            consumer.assign([partition])
            earliest = int((await consumer.beginning_offsets([partition]))[partition])
            start = max(at_least, earliest)
            end = int((await consumer.end_offsets([partition]))[partition])
            if start >= end:
                return start
            consumer.seek(partition, start)
            batch = await consumer.getmany(partition, timeout_ms=int(timeout_s * 1000))
            records = batch.get(partition, [])
            if records:
                return min(int(records[0].offset), end)
            # None came: the fetch passed only transaction markers (the position moved past
            # them, not beyond the end read above), or the broker was slow (it did not).
            return min(max(start, int(await consumer.position(partition))), end)

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None
