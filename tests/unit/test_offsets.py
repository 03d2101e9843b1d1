"""Records are processed in offset order or not at all (streams/offsets.py): a record the stream
layer skipped holds its partition back until the partition is re-read, so no offset is ever
committed past a record that was not processed."""

from __future__ import annotations

import asyncio

import pytest

from streams.checkpoint import TP
from streams.offsets import SEEK_GRACE_S, OffsetTracker, Verdict
from tests.unit.test_pipeline import TOPIC, Harness, records, settle

P0 = TP(TOPIC, 0)


def test_in_order_duplicates_and_a_gap() -> None:
    tracker = OffsetTracker(lambda tp: 10)
    tracker.assigned([P0])
    assert tracker.admit(P0, 10) == (Verdict.PROCESS, 10)
    assert tracker.admit(P0, 11) == (Verdict.PROCESS, 11)
    assert tracker.admit(P0, 11) == (Verdict.DUPLICATE, 12)  # re-delivered: already processed
    assert tracker.admit(P0, 13) == (Verdict.GAP, 12)  # 12 never arrived
    assert tracker.admit(P0, 14)[0] is Verdict.HOLD  # held until the partition is re-read
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


def test_records_before_the_start_is_read_are_held_then_re_read() -> None:
    tracker = OffsetTracker(lambda tp: None)
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.admit(P0, 40)[0] is Verdict.HOLD  # arrived before the start was read
    assert tracker.start_known(P0, 40) is True  # held records: re-read from 40
    assert tracker.admit(P0, 40) == (Verdict.PROCESS, 40)
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.start_known(P0, 41) is False  # nothing held: no re-read needed
    assert tracker.admit(P0, 42) == (Verdict.GAP, 41)


def test_an_unreadable_start_falls_back_on_fausts_commit() -> None:
    tracker = OffsetTracker(lambda tp: 7)
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.admit(P0, 9)[0] is Verdict.HOLD
    assert tracker.start_unknown(P0) is True
    assert tracker.admit(P0, 7) == (Verdict.PROCESS, 7)


def test_records_fetched_before_a_seek_are_stale_not_a_new_gap() -> None:
    # Observed on the broker: after a seek, the fetcher's buffer still delivers records read
    # before it; taking each for a new gap re-sought the partition over and over.
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 10, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 12) == (Verdict.GAP, 10)
    tracker.resolved(P0, 10)  # sought back to 10
    assert tracker.admit(P0, 13) == (Verdict.HOLD, 10)  # fetched before the seek
    assert tracker.admit(P0, 14) == (Verdict.HOLD, 10)
    assert tracker.admit(P0, 10) == (Verdict.PROCESS, 10)  # the re-read begins
    assert tracker.admit(P0, 12) == (Verdict.GAP, 11)  # a real gap again: resolved again


def test_a_sought_record_that_never_comes_is_resolved_again() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: 10, clock=lambda: now[0])
    tracker.assigned([P0])
    assert tracker.admit(P0, 12)[0] is Verdict.GAP
    tracker.resolved(P0, 10)
    assert tracker.admit(P0, 12)[0] is Verdict.HOLD
    now[0] = SEEK_GRACE_S + 1  # the record at 10 did not come (deleted meanwhile)
    assert tracker.admit(P0, 12) == (Verdict.GAP, 10)


def test_held_records_at_assignment_are_stale_until_the_start_arrives() -> None:
    now = [0.0]
    tracker = OffsetTracker(lambda tp: None, clock=lambda: now[0])
    tracker.assigned([P0], awaiting_start=True)
    assert tracker.admit(P0, 3)[0] is Verdict.HOLD
    assert tracker.start_known(P0, 0) is True  # seek to 0
    assert tracker.admit(P0, 55) == (Verdict.HOLD, 0)  # buffered before the seek
    assert tracker.admit(P0, 0) == (Verdict.PROCESS, 0)
