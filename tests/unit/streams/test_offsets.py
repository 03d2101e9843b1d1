"""Records are processed in offset order or not at all (streams/offsets.py): a record the stream
layer skipped holds its partition back until the partition is re-read, so no offset is ever
committed past a record that was not processed."""

from __future__ import annotations

import asyncio

import pytest

from streams.checkpoint import TP
from streams.offsets import SEEK_GRACE_S, STALL_S, OffsetTracker, Verdict
from tests.unit.streams.test_pipeline import TOPIC, Harness, records, settle

P0 = TP(TOPIC, 0)


def test_in_order_duplicates_and_a_gap() -> None:
    tracker = OffsetTracker(lambda tp: 10)
    tracker.assigned([P0])
    assert tracker.admit(P0, 10) == (Verdict.PROCESS, 10)
    assert tracker.admit(P0, 11) == (Verdict.PROCESS, 11)
    assert tracker.admit(P0, 11) == (Verdict.DUPLICATE, 12)  # re-delivered: already processed
    assert tracker.admit(P0, 13) == (Verdict.GAP, 12)  # 12 never arrived
    assert tracker.admit(P0, 14)[0] is Verdict.RESOLVING  # held until the partition is re-read
    tracker.resolved(P0, 12)
    assert tracker.admit(P0, 12) == (Verdict.PROCESS, 12)
    assert tracker.admit(P0, 13) == (Verdict.PROCESS, 13)


def test_the_first_record_is_expected_at_the_committed_offset() -> None:
    tracker = OffsetTracker(lambda tp: 100)
    tracker.assigned([P0])
    assert tracker.admit(P0, 101) == (Verdict.GAP, 100)  # the committed record itself is missing


def test_never_committed_asks_the_broker_for_the_first_offset() -> None:
    tracker = OffsetTracker(lambda tp: None)
    tracker.assigned([P0])
    assert tracker.admit(P0, 7) == (Verdict.GAP, 0)
    tracker.resolved(P0, 5)  # the log starts at 5 (retention deleted 0-4)
    assert tracker.admit(P0, 5) == (Verdict.PROCESS, 5)


def test_a_legitimate_gap_is_accepted_from_the_broker_answer() -> None:
    tracker = OffsetTracker(lambda tp: 0)
    tracker.assigned([P0])
    assert tracker.admit(P0, 0)[0] is Verdict.PROCESS
    assert tracker.admit(P0, 2) == (Verdict.GAP, 1)  # 1 is a transaction marker
    tracker.resolved(P0, 2)  # the broker's first record at or after 1
    assert tracker.admit(P0, 2) == (Verdict.PROCESS, 2)


def test_off_before_the_first_assignment_and_reset_by_each_assignment() -> None:
    tracker = OffsetTracker(lambda tp: 50)
    assert tracker.admit(P0, 3)[0] is Verdict.PROCESS  # no assignment yet: not checked
    tracker.assigned([P0])
    assert tracker.admit(P0, 50)[0] is Verdict.PROCESS
    tracker.assigned([P0])  # a rebalance: faust re-reads from the committed offset again
    assert tracker.admit(P0, 50)[0] is Verdict.PROCESS


@pytest.mark.asyncio
async def test_the_pipeline_holds_a_gap_re_reads_and_never_commits_past_it() -> None:
    h = Harness()
    seeks: list[tuple[TP, int]] = []
    committed = {P0: 10}

    async def resolve(tp: TP, expected: int) -> int:
        seeks.append((tp, expected))
        return expected  # the record exists: the stream layer had dropped it

    h.pipeline.tracker = OffsetTracker(committed.get)
    h.pipeline._resolve_gap = resolve
    h.pipeline.assigned([P0])
    await h.submit("b1", records(0, range(10, 12)) + records(0, range(13, 15)))  # 12 missing
    await settle()
    assert seeks == [(P0, 12)]
    assert len(h.broker.sent) == 2 * 2  # 10 and 11 processed; 13 and 14 held back
    h.broker.ack()
    await settle()
    assert await h.pipeline.commit() == {P0: 12}  # not past the missing record
    await h.submit("b2", records(0, range(12, 15)))  # the re-read
    await settle()
    h.broker.ack()
    await settle()
    assert await h.pipeline.commit() == {P0: 15}
    assert len(h.broker.sent) == 5 * 2


@pytest.mark.asyncio
async def test_a_re_read_started_before_a_rebalance_is_cancelled_by_it() -> None:
    h = Harness()
    started = asyncio.Event()
    release = asyncio.Event()

    async def resolve(tp: TP, expected: int) -> int:
        started.set()
        await release.wait()  # the broker is slow to answer
        return expected

    h.pipeline.tracker = OffsetTracker(lambda tp: 0)
    h.pipeline._resolve_gap = resolve
    h.pipeline.assigned([P0])
    await h.submit("b1", records(0, range(5, 6)))
    await started.wait()
    await h.pipeline.on_revoked([P0], timeout=0.1)  # cancels it: no seek after the rebalance
    assert h.pipeline._resolving == set()


def test_records_before_the_start_is_read_wait_for_it() -> None:
    tracker = OffsetTracker(lambda tp: None)
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.admit(P0, 40)[0] is Verdict.AWAIT_START  # arrived before the start was read
    tracker.start_known(P0, 40)
    assert tracker.admit(P0, 40) == (Verdict.PROCESS, 40)
    tracker.assigned([P0], awaiting_start=True)
    tracker.start_known(P0, 41)
    assert tracker.admit(P0, 42) == (Verdict.GAP, 41)  # faust skipped 41


def test_an_unreadable_start_falls_back_on_fausts_commit() -> None:
    tracker = OffsetTracker(lambda tp: 7)
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.admit(P0, 9)[0] is Verdict.AWAIT_START
    tracker.start_unknown(P0)
    assert tracker.admit(P0, 7) == (Verdict.PROCESS, 7)


@pytest.mark.asyncio
async def test_the_pipeline_waits_for_the_starts_then_processes_in_order() -> None:
    # Observed on the broker: with a full topic, the whole backlog arrived while the starts
    # were read; held and re-read, faust's read-offset filter then dropped the re-read.
    # Waiting (the agent, hence the fetcher) instead re-reads nothing.
    h = Harness()
    h.pipeline.tracker = OffsetTracker(lambda tp: None)
    h.pipeline.assigned([P0], awaiting_start=True)
    submit = asyncio.create_task(h.submit("b1", records(0, range(0, 3))))
    await settle()
    assert not submit.done() and h.broker.sent == []  # waiting for the start
    h.pipeline.starts_read({P0: 0})
    await submit
    await settle()
    assert len(h.broker.sent) == 3 * 2  # all three processed, no re-read needed
    h.broker.ack()
    await settle()
    assert await h.pipeline.commit() == {P0: 3}


@pytest.mark.asyncio
async def test_a_batch_waiting_for_the_starts_is_dropped_by_a_rebalance() -> None:
    h = Harness()
    h.pipeline.tracker = OffsetTracker(lambda tp: None)
    h.pipeline.assigned([P0], awaiting_start=True)
    submit = asyncio.create_task(h.submit("b1", records(0, range(0, 3))))
    await settle()
    await h.pipeline.on_revoked([P0], timeout=0.1)
    await submit  # woken by the revoke, processed nothing: re-delivered to the next owner
    assert h.broker.sent == []


def test_records_fetched_before_a_seek_are_stale_not_a_new_gap() -> None:
    # Observed on the broker: after a seek, the fetcher's buffer still delivers records read
    # before it; taking each for a new gap re-sought the partition over and over.
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 10, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 12) == (Verdict.GAP, 10)
    tracker.resolved(P0, 10)  # sought back to 10
    assert tracker.admit(P0, 13) == (Verdict.RESOLVING, 10)  # fetched before the seek
    assert tracker.admit(P0, 14) == (Verdict.RESOLVING, 10)
    assert tracker.admit(P0, 10) == (Verdict.PROCESS, 10)  # the re-read begins
    assert tracker.admit(P0, 12) == (Verdict.GAP, 11)  # a real gap again: resolved again


def test_a_sought_record_that_never_comes_is_resolved_again() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 10, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 12)[0] is Verdict.GAP
    tracker.resolved(P0, 10)
    assert tracker.admit(P0, 12)[0] is Verdict.RESOLVING
    now[0] = SEEK_GRACE_S + 1  # the record at 10 did not come (deleted meanwhile)
    assert tracker.admit(P0, 12) == (Verdict.GAP, 10)


def test_a_partition_with_records_that_delivers_none_is_re_read() -> None:
    # The loss no later record reveals (streams/offsets.py): faust cleared the stream's queue,
    # the partition's last records with it; the broker holds records from 10 to 50.
    now = [0.0]
    end: dict[TP, int | None] = {P0: 50}
    tracker = OffsetTracker(lambda tp: 10, clock=lambda: now[0])
    tracker.assigned([P0], awaiting_start=True)
    tracker.start_known(P0, 10)
    now[0] = STALL_S - 1
    assert tracker.stalled(end.get) == []  # not yet
    now[0] = STALL_S + 1
    assert tracker.stalled(end.get) == [(P0, 10)]
    assert tracker.stalled(end.get) == []  # being resolved: asked once
    assert tracker.admit(P0, 10) == (Verdict.RESOLVING, 10)
    tracker.resolved(P0, 10)
    assert tracker.admit(P0, 10) == (Verdict.PROCESS, 10)  # the re-read delivers


def test_no_re_read_without_records_beyond_the_expected_offset() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 10, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 10)[0] is Verdict.PROCESS
    now[0] = 10 * STALL_S
    assert tracker.stalled({P0: 11}.get) == []  # all read: idle, not stalled
    assert tracker.stalled({}.get) == []  # end offset not known
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.stalled({P0: 50}.get) == []  # its start is being read
    now[0] = 20 * STALL_S
    assert tracker.stalled({P0: 50}.get) == []  # still being read: records wait for it


def test_records_arriving_keep_a_partition_from_being_re_read() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 0, clock=lambda: now[0])
    tracker.assigned([P0])
    for offset in range(5):
        now[0] += STALL_S - 1
        assert tracker.admit(P0, offset)[0] is Verdict.PROCESS
        assert tracker.stalled({P0: 100}.get) == []


@pytest.mark.asyncio
async def test_the_pipeline_re_reads_a_stalled_partition_only_when_idle() -> None:
    h = Harness()
    seeks: list[tuple[TP, int]] = []
    now = [0.0]

    async def resolve(tp: TP, expected: int) -> int:
        seeks.append((tp, expected))
        return expected

    h.pipeline.tracker = OffsetTracker(lambda tp: 0, clock=lambda: now[0])
    h.pipeline._resolve_gap = resolve
    h.pipeline.assigned([P0])
    await h.submit("b1", records(0, range(0, 2)))
    await settle()
    now[0] = STALL_S + 1
    assert h.pipeline.check_stalled({P0: 9}.get) == 0  # outputs in flight: the agent is busy
    h.broker.ack()
    await settle()
    assert h.pipeline.check_stalled({P0: 9}.get) == 1
    await settle()
    assert seeks == [(P0, 2)]
    await h.submit("b2", records(0, range(2, 9)))  # the re-read
    await settle()
    h.broker.ack()
    await settle()
    assert await h.pipeline.commit() == {P0: 9}


def test_a_partition_whose_start_is_unknown_is_checked_from_its_committed_offset() -> None:
    # start_unknown (the broker did not answer): no record yet, so no expected offset of its own.
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 5, clock=lambda: now[0])
    tracker.assigned([P0], awaiting_start=True)
    tracker.start_unknown(P0)
    now[0] = STALL_S + 1
    assert tracker.stalled({P0: 9}.get) == [(P0, 5)]
    never = OffsetTracker(lambda tp: None, clock=lambda: now[0])  # never committed
    never.assigned([P0])
    now[0] = 3 * STALL_S
    assert never.stalled({P0: 9}.get) == [(P0, 0)]  # the broker's first offset decides


def test_a_resolution_from_an_earlier_assignment_is_ignored() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 0, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 3)[0] is Verdict.GAP  # resolution of 0 pending...
    tracker.assigned([P0], awaiting_start=True)  # ...when a rebalance gives a new assignment
    tracker.start_known(P0, 5)
    assert tracker.admit(P0, 5)[0] is Verdict.PROCESS
    tracker.resolved(P0, 0)  # the old answer arrives late: it must not rewind the partition
    assert tracker.admit(P0, 6) == (Verdict.PROCESS, 6)


def test_restart_stall_clock_gives_every_partition_time_again() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 0, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 0)[0] is Verdict.PROCESS
    now[0] = STALL_S + 1
    tracker.restart_stall_clock()  # a rebalance or the tables' recovery: nothing could flow
    assert tracker.stalled({P0: 9}.get) == []
    now[0] = 2 * STALL_S + 2
    assert tracker.stalled({P0: 9}.get) == [(P0, 1)]


@pytest.mark.asyncio
async def test_a_probe_that_failed_to_start_starts_afresh_next_time() -> None:
    from aiokafka.errors import KafkaConnectionError

    from streams.offsets import OffsetProbe

    probe = OffsetProbe(["127.0.0.1:1"], {"request_timeout_ms": 1000})  # nothing listens there
    for _ in range(2):  # the second call fails the same way, not on a half-started client
        with pytest.raises(KafkaConnectionError):
            await probe.first_offset(P0, 0)
        with pytest.raises(KafkaConnectionError):
            await probe.starts("g", [P0])
    await probe.close()
