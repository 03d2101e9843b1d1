"""The notices' daily run (EVENTS.md "ComplianceNotice v1"; docs/rules.md "Notices"): the
date-driven notices (certification, verbal order signature, recertification) of patients who
had no visit that day.

Not faust's `crontab`: that runs on every worker, knows nothing of partitions and never catches
up a missed run. Instead each owned, recovered partition keeps its own run state in the history
table (`run_key`: the dates done, the run in progress and where it stands), written through the
state transaction like everything else, so it moves with the partition and comes back after a
SIGKILL exactly as durable as the notices it published:

- The run's date is today in the clinic's zone once the clinic's clock reads TC_NOTICE_DAILY_AT,
  else yesterday. A partition whose last date done is before it runs every date missed, from
  the day after its last date done (at the first run: the earliest date of service the
  partition has seen, `since`), in one pass: per patient, each obligation once, as of the first
  date it was due (compliance/notices.py `due_between`).
- The pass goes through the partition's patients in key order, TC_NOTICE_SCAN_CHUNK at a time
  and for at most TC_NOTICE_SCAN_BUDGET_S each; each chunk is a transaction of its own (its
  notices acknowledged before its state and the cursor are durable: streams/pipeline.py), and
  the event loop runs the rest of the worker between chunks for as long as the chunk took
  (`run_steps`), and a chunk starts only once the visits fetched are processed: a visit
  arriving during a run waits for about one chunk, and the run takes at most about half of the
  loop, also under a steady feed of visits.
- A chunk lost to a SIGKILL or a rebalance leaves the cursor at the last durable chunk; the
  partition's owner runs the chunk again and sends its notices again with the same ids (the
  state saying they were sent was not durable): duplicates, nothing lost.
- The clock is injectable (tests set it to a date).
"""

from __future__ import annotations

import asyncio
import logging
import time as clock
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

import msgspec

from compliance import Engine, state_layout
from compliance.notices import due_within
from runtime.settings import Settings
from streams.metrics import Metrics
from streams.notice_state import RunState, encode_state, read_state, run_key
from streams.processor import Output, patient_keys, read_patient
from streams.transaction import StaleTransaction, Store, Transaction

log = logging.getLogger(__name__)

#: Days ahead the "due this week" gauge counts.
DUE_SOON_DAYS = 7


def run_date(now: datetime, zone: tzinfo, at: time) -> date:
    """The latest date whose daily run is due at `now`: today on the clinic's clock (`zone`)
    once it reads `at` (TC_NOTICE_DAILY_AT), else yesterday."""
    local = now.astimezone(zone)
    today = local.date()
    return today if local.time() >= at else today - timedelta(days=1)


class Step(StrEnum):
    """What one attempt at a step of the daily run did (`run_steps`)."""

    #: A chunk was judged; more may be left.
    STEPPED = "stepped"
    #: No run left on the partitions (or none to run: not owned, rebalancing).
    DONE = "done"
    #: Not taken: a partition's input fell behind since `behind` looked.
    BEHIND = "behind"


async def run_steps(
    step: Callable[[], Awaitable[Step]],
    spent: Callable[[], float],
    behind: Callable[[], bool],
    stop: Callable[[], bool],
    patience: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll: float = 0.01,
) -> None:
    """Run steps until none is left, `stop` says so (a rebalance), or the input stays behind
    (records fetched and not processed yet) for `patience` seconds since the last step. A step
    starts only once the input is caught up - a run judges only what has been processed
    (streams/stages.py) - so the visits go first: it waits, polling. After each step the event
    loop runs the rest of the worker for as long as the step took (`spent`), so a run over many
    patients takes at most about half of the loop and a visit waits for about one step."""
    waited = 0.0
    while not stop():
        if not behind():
            done = await step()
            if done is Step.DONE:
                return
            if done is Step.STEPPED:
                waited = 0.0
                await sleep(spent())
                continue
            # Step.BEHIND: it fell behind while the step waited for a slot.
        if waited >= patience:
            return  # the next timer tick tries again
        await sleep(poll)
        waited += poll


class NoticeRun:
    """One step of the daily run: one chunk of one partition's patients."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        engine: Engine,
        table: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = engine
        self.table = table
        self.clock = clock
        #: Read once: the profile's time zone (a file) would be read at every step.
        self.zone = settings.clinic_zone
        #: Whether the last step left work for another (the timer loops while it does).
        self.more = False
        #: The owned partitions' last finished runs' due-soon counts (the gauge).
        self.due_soon: dict[int, dict[str, int]] = {}
        #: How long the last step took (seconds): the loop's other work gets as long.
        self.spent = 0.0

    def step(self, txn: Transaction, partitions: set[int]) -> list[Output]:
        """Run one chunk of the first partition (in order) that has a run to do."""
        started = clock.monotonic()
        try:
            return self._step(txn, partitions)
        finally:
            self.spent = clock.monotonic() - started

    def _step(self, txn: Transaction, partitions: set[int]) -> list[Output]:
        self.more = False
        now = self.clock()
        target = run_date(now, self.zone, self.settings.notice_daily_time)
        for partition in sorted(partitions):
            key = run_key(partition)
            state = read_state(txn.get(self.table, partition, key))
            self._show(partition, state)
            if state.target is None:
                start = (
                    state.done_through + timedelta(days=1)
                    if state.done_through is not None
                    else state.since
                )
                if start is None or start > target:
                    continue
                state = msgspec.structs.replace(
                    state, start=start, target=target, cursor=None, counting=()
                )
            out = self._chunk(txn, partition, state, now)
            self.more = True
            return out
        return []

    def _chunk(
        self, txn: Transaction, partition: int, state: RunState, now: datetime
    ) -> list[Output]:
        assert state.start is not None and state.target is not None
        limit = self.settings.notice_scan_chunk
        patients = txn.owners_after(self.table, partition, state.cursor, limit)
        out: list[Output] = []
        counting = dict(state.counting)
        topic = self.settings.topic_notices
        # Bounded in time too: a first run or a long catch-up judges many dates per patient
        # (tens of ms each), and the event loop must not wait for 500 of them.
        deadline = clock.monotonic() + self.settings.notice_scan_budget_s
        done: list[bytes] = []
        for patient in patients:
            if done and clock.monotonic() > deadline:
                break
            done.append(patient)
            mark = txn.mark()
            try:
                stored = read_patient(patient, *patient_keys(txn, self.table, partition, patient))
                ref = patient.decode()
                notices, after = self.engine.notices_due(
                    stored.history, ref, state.start, state.target, now
                )
                soon = due_within(
                    [vs[-1] for vs in after.visits], state.target, DUE_SOON_DAYS, self.engine.rules
                )
                for kind, count in soon.items():
                    counting[kind] = counting.get(kind, 0) + count
                if notices:
                    writes, _ = state_layout.changes(patient, stored, after, None)
                    for where, value in writes:
                        txn.put(self.table, partition, where, value)
                    for n in notices:
                        out.append(Output(topic, patient, n.model_dump_json().encode()))
                        self.metrics.notices_published_by(n.kind.value).inc()
            except StaleTransaction:
                raise
            except Exception as exc:
                # One patient's state that cannot be judged must not stop the run for the
                # others: counted and logged (no PHI), and the run moves on.
                txn.rollback(mark)
                self.metrics.notice_run_errors.inc()
                log.error(
                    "notice run: patient state on partition %d could not be judged: %s",
                    partition,
                    type(exc).__name__,
                )
        if len(done) == len(patients) and len(patients) < limit:  # the last: the run is done
            soon_by_kind = tuple(sorted(counting.items()))
            state = msgspec.structs.replace(
                state,
                done_through=state.target,
                start=None,
                target=None,
                cursor=None,
                counting=(),
                due_soon=soon_by_kind,
            )
            log.info("notice run on partition %d done through %s", partition, state.done_through)
        else:
            state = msgspec.structs.replace(
                state, cursor=done[-1], counting=tuple(sorted(counting.items()))
            )
        txn.put(self.table, partition, run_key(partition), encode_state(state))
        return out

    def _show(self, partition: int, state: RunState) -> None:
        self.due_soon[partition] = dict(state.due_soon)

    def forget_partitions(self, partitions: set[int]) -> None:
        for p in partitions:
            self.due_soon.pop(p, None)

    def measure(self, owned: set[int]) -> None:
        """The gauge of what falls due within a week, from the owned partitions' last runs."""
        for p in list(self.due_soon):
            if p not in owned:
                del self.due_soon[p]
        for p in sorted(owned):
            try:
                self.due_soon[p] = dict(read_state(self.table.get(p, run_key(p))).due_soon)
            except StaleTransaction:
                continue
        totals: dict[str, int] = {}
        for counts in self.due_soon.values():
            for kind, n in counts.items():
                totals[kind] = totals.get(kind, 0) + n
        self.metrics.show_notices_due(totals)


__all__ = ["DUE_SOON_DAYS", "NoticeRun", "Step", "run_date", "run_steps"]
