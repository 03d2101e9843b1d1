"""The notices' daily run and the check stage together (issue 22; EVENTS.md "ComplianceNotice
v1"), at unit level: DictStore, VisitProcessor, NoticeRun, run_audit; no broker. The oracle is
`audit --notices-out --as-of` (cli/audit.py: the final state's daily runs, day by day) and, for
the pieces, a plain computation in the test. The first five came from a review (each failed on
d1c54be)."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from unittest.mock import patch

import orjson

from cli.audit import NoticeOptions, run_audit
from compliance import Engine
from runtime.settings import Settings
from streams.metrics import Metrics
from streams.notice_run import NoticeRun, Step, run_steps
from streams.notice_state import read_state, run_key
from streams.processor import Record, VisitProcessor, guarded
from streams.transaction import Chain, DictStore, Transaction, commit_now
from tests.factories import doc, episode_visit

ENGINE = Engine()
P = 0


class Stream:
    """One partition of the check stage and its daily run, transactions committed at once."""

    def __init__(self, **env: str) -> None:
        self.settings = Settings.from_env({"TC_NOTICE_SCAN_CHUNK": "2", **env})
        self.store = DictStore()
        self.chain = Chain()
        self.now = datetime(2020, 1, 1, tzinfo=UTC)
        metrics = Metrics()
        self.proc = VisitProcessor(
            self.settings, metrics, ENGINE, table=self.store, clock=lambda: self.now
        )
        self.run = NoticeRun(self.settings, metrics, ENGINE, self.store, clock=lambda: self.now)
        self.offset = 0
        self.ids: list[str] = []

    def _collect(self, outs: list[Any]) -> None:
        self.ids += [
            orjson.loads(o.value)["notice_id"]
            for o in outs
            if o.topic == self.settings.topic_notices
        ]

    def visit(self, data: dict[str, Any], commit: bool = True) -> Transaction:
        self.offset += 1
        rec = Record(
            self.settings.topic_visits,
            P,
            self.offset,
            data["patient_ref"].encode(),
            orjson.dumps(data),
            0,
        )
        txn = self.chain.begin()
        self._collect(guarded(self.proc, rec, txn))
        if commit:
            commit_now(txn)
        return txn

    def daily(self, day: date) -> None:
        self.now = datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)
        while True:
            txn = self.chain.begin()
            self._collect(self.run.step(txn, {P}))
            commit_now(txn)
            if not self.run.more:
                break


def audit_ids(visits: list[dict[str, Any]], as_of: date) -> list[str]:
    buf = io.BytesIO()
    stream = io.BytesIO(b"\n".join(orjson.dumps(v) for v in visits) + b"\n")
    run_audit(stream, io.BytesIO(), io.StringIO(), engine=ENGINE, notices=NoticeOptions(buf, as_of))
    return [orjson.loads(line)["notice_id"] for line in buf.getvalue().splitlines()]


def ev(visit_id: str, day: date, **kw: Any) -> dict[str, Any]:
    return episode_visit(visit_id, day.isoformat(), **kw)


D0 = date(2026, 3, 2)


def test_a_late_visit_dated_before_the_last_run_gets_the_dates_since_judged() -> None:
    # An evaluation dated D0 documented late (arrives after the runs through D0 + 34): its
    # certification window D0+21..D0+30 lies wholly between its date and the last run. The
    # backfill (audit --as-of) writes CERTIFICATION_DUE; the stream never publishes it.
    other = ev("VB1", date(2026, 1, 5), evaluation=True, kind="commercial", patient_ref="P-B")
    late = ev("VA1", D0, evaluation=True, docs=[doc("plan_of_care")], patient_ref="P-A")
    s = Stream()
    s.visit(other)
    day = date(2026, 1, 5)
    while day <= D0 + timedelta(days=34):
        s.daily(day)
        day += timedelta(days=1)
    s.visit(late)
    s.daily(D0 + timedelta(days=35))
    expected = set(audit_ids([other, late], D0 + timedelta(days=35)))
    assert expected  # CERTIFICATION_DUE as of D0 + 21
    assert set(s.ids) == expected


def test_since_is_written_again_after_its_transaction_was_abandoned() -> None:
    # Two batches in flight on a fresh partition; a give-up (Pipeline._give_up: chain.clear())
    # abandons both, the partition stays ours, both records are re-delivered. The second batch
    # cached `since` from the first's (abandoned) write, so the re-delivery never writes it:
    # the partition's daily run never starts.
    a1 = ev("VA1", D0, evaluation=True, docs=[doc("plan_of_care")], patient_ref="P-A")
    a2 = ev("VA2", D0 + timedelta(days=3), patient_ref="P-A")
    s = Stream()
    s.visit(a1, commit=False)
    s.visit(a2, commit=False)
    s.chain.clear()
    s.offset = 0
    s.visit(a1)
    s.visit(a2)
    assert read_state(s.store.get(P, run_key(P))).since == D0


def test_audit_runs_each_date_after_that_dates_visits_only() -> None:
    # EVENTS.md: audit --as-of writes "one daily run for each date through DATE after that
    # date's visits" (issue 22: "day by day"). A live worker runs D0+21 before the visit of
    # D0+24 that brings the certification, and publishes CERTIFICATION_DUE; the audit judges
    # D0+21 knowing the later visit and writes nothing.
    a1 = ev("VA1", D0, evaluation=True, docs=[doc("plan_of_care")], patient_ref="P-A")
    a2 = ev(
        "VA2", D0 + timedelta(days=24), docs=[doc("certification", author="MD")], patient_ref="P-A"
    )
    s = Stream()
    s.visit(a1)
    day = D0
    while day <= D0 + timedelta(days=25):
        if day == D0 + timedelta(days=24):
            s.visit(a2)
        s.daily(day)
        day += timedelta(days=1)
    assert s.ids  # the live run's CERTIFICATION_DUE
    assert set(audit_ids([a1, a2], D0 + timedelta(days=25))) == set(s.ids)


def test_audit_writes_each_notice_id_once_past_48_notices_of_a_patient() -> None:
    # EVENTS.md: "each notice_id written once". 50 open named episodes, each with a visit on
    # day 21 (CERTIFICATION_DUE): the patient's sent ids keep 48, and the daily runs after the
    # visits write the forgotten ones again.
    visits = [
        ev(
            f"E{i}",
            D0,
            evaluation=True,
            docs=[doc("plan_of_care")],
            episode_ref=f"EP-{i}",
            patient_ref="P-A",
        )
        for i in range(50)
    ] + [
        ev(f"T{i}", D0 + timedelta(days=21), episode_ref=f"EP-{i}", patient_ref="P-A")
        for i in range(50)
    ]
    ids = audit_ids(visits, D0 + timedelta(days=22))
    assert [i for i, n in Counter(ids).items() if n > 1] == []


def test_a_late_visit_is_announced_as_of_its_date_as_the_audit_writes() -> None:
    # A visit of D0+22 arriving after the visit of D0+25 that brought the signed certification:
    # judged as of its date (the records dated on or before it), so CERTIFICATION_DUE as of
    # D0+22, the id the audit's daily run of D0+21 writes (the same obligation).
    visits = [
        ev("VE", D0, evaluation=True, docs=[doc("plan_of_care")]),
        ev("VC", D0 + timedelta(days=25), docs=[doc("certification", author="MD")]),
        ev("VL", D0 + timedelta(days=22)),  # documented late
    ]
    s = Stream()
    for v in visits:
        s.visit(v)
    expected = set(audit_ids(visits, D0 + timedelta(days=25)))
    assert len(expected) == 1
    assert set(s.ids) == expected


def cohort(patients: int, seed: int) -> list[dict[str, Any]]:
    from synthetic.visits import EpisodeGenerator

    return [orjson.loads(r.value) for r in EpisodeGenerator(seed=seed, patients=patients).cohort()]


def run_through(s: Stream, as_of: date, interrupt_every: int = 0) -> int:
    """The daily run as of `as_of` on stream `s`, step by step; every `interrupt_every`-th
    step's transaction is abandoned (a SIGKILL or a revoke before it was durable: its notices
    were sent, its state not). Returns the steps taken."""
    s.now = datetime(as_of.year, as_of.month, as_of.day, 8, 0, tzinfo=UTC)
    steps = 0
    while True:
        steps += 1
        txn = s.chain.begin()
        s._collect(s.run.step(txn, {P}))
        if interrupt_every and steps % interrupt_every == 0:
            s.chain.clear()  # abandoned: the next step starts again from the durable cursor
        else:
            commit_now(txn)
        if not s.run.more and not (interrupt_every and steps % interrupt_every == 0):
            return steps


def test_a_run_in_chunks_with_steps_abandoned_gives_audits_ids_duplicates_only() -> None:
    # Issue 22 item 3: "A rebalance or restart during the run neither loses nor repeats notices
    # beyond duplicates with the same notice_id". 30 patients, chunks of 2, every third step
    # abandoned after its notices were sent; the run catches up 30 dates past the visits.
    visits = [v for v in cohort(30, 5) if date.fromisoformat(v["date_of_service"]) <= D0]
    as_of = D0 + timedelta(days=30)
    expected = set(audit_ids(visits, as_of))
    s = Stream()
    s.now = datetime(2020, 1, 1, tzinfo=UTC)  # before the visits: no run yet
    for v in visits:
        s.visit(v)
    before = len(s.ids)
    steps = run_through(s, as_of, interrupt_every=3)
    assert steps > 10 and len(s.ids) > before  # many chunks; the run published notices
    assert set(s.ids) == expected
    state = read_state(s.store.get(P, run_key(P)))
    assert state.done_through == as_of and state.target is None and state.cursor is None


def test_a_step_stops_at_its_time_budget_and_the_run_still_covers_every_patient() -> None:
    # TC_NOTICE_SCAN_BUDGET_S: a tiny budget gives one patient per step; the same ids.
    visits = [v for v in cohort(12, 6) if date.fromisoformat(v["date_of_service"]) <= D0]
    as_of = D0 + timedelta(days=20)
    patients = {v["patient_ref"] for v in visits}
    s = Stream(TC_NOTICE_SCAN_CHUNK="500", TC_NOTICE_SCAN_BUDGET_S="0.000001")
    for v in visits:
        s.visit(v)
    steps = run_through(s, as_of)
    assert steps == len(patients) + 1  # one patient a step, then the step that finds none left
    assert set(s.ids) == set(audit_ids(visits, as_of))


def test_between_steps_the_loop_runs_the_rest_for_as_long_as_the_step_took() -> None:
    # The daily run must not hold the event loop from the visits' batches (a visit arriving
    # during a run waits for about one step; the worker's latency, bench/RESULTS.md): after
    # each step it sleeps for as long as that step took; before each step it waits, polling,
    # while the input is behind; it stops when no run is left, at a rebalance, or when the
    # input stays behind for its patience since the last step (a step that found it behind
    # after waiting for a slot counts as waiting).
    took: Any = iter([0.004, 0.011, 0.007])
    slept: list[float] = []
    steps: list[Step] = [Step.STEPPED, Step.STEPPED, Step.DONE]
    spent = 0.0
    behind: list[bool] = []

    async def step() -> Step:
        nonlocal spent
        done = steps.pop(0)
        if done is Step.STEPPED:
            spent = next(took)
        return done

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def lagging() -> bool:
        return behind.pop(0) if behind else False

    def go(stop: Any = lambda: False, patience: float = 1.0) -> None:
        asyncio.run(run_steps(step, lambda: spent, lagging, stop, patience, sleep, 0.25))

    go()
    assert slept == [0.004, 0.011] and not steps
    # Behind twice before the first step, once before the second: polled, then the steps.
    took, behind[:], slept[:] = iter([0.002]), [True, True, False, True, False], []
    steps[:] = [Step.STEPPED, Step.DONE]
    go()
    assert slept == [0.25, 0.25, 0.002, 0.25] and not steps and not behind
    # A rebalance ends it after a step.
    stops = iter([False, True])
    took, slept[:], steps[:] = iter([0.002]), [], [Step.STEPPED, Step.STEPPED, Step.STEPPED]
    go(lambda: next(stops))
    assert slept == [0.002] and len(steps) == 2  # one step, then the rebalance
    # Behind for longer than its patience: no step, until the next timer tick.
    behind[:], slept[:], steps[:] = [True] * 10, [], [Step.STEPPED]
    go(patience=1.0)
    assert slept == [0.25] * 4 and steps == [Step.STEPPED]
    # Steps that find the input behind count toward the patience, and a real step restarts
    # it: 3 x 0.25 s, a step, 3 x 0.25 s, a step, then 4 x 0.25 s and a fifth attempt
    # behind: the patience is out.
    took, slept[:], behind[:] = iter([0.001, 0.001]), [], []
    steps[:] = [Step.BEHIND] * 3 + [Step.STEPPED] + [Step.BEHIND] * 3 + [Step.STEPPED]
    steps += [Step.BEHIND] * 10
    go(patience=1.0)
    assert slept == [0.25] * 3 + [0.001] + [0.25] * 3 + [0.001] + [0.25] * 4
    assert len(steps) == 5


def test_a_step_measures_how_long_it_took() -> None:
    s = Stream()
    for v in cohort(12, 6):
        if date.fromisoformat(v["date_of_service"]) <= D0:
            s.visit(v)
    s.now = datetime.combine(D0 + timedelta(days=5), datetime.min.time(), UTC).replace(hour=12)
    readings: list[float] = []

    class Clock:
        @staticmethod
        def monotonic() -> float:
            readings.append(100.0 + 0.25 * len(readings))
            return readings[-1]

    txn = s.chain.begin()
    with patch("streams.notice_run.clock", Clock):
        s.run.step(txn, {0})
    assert s.run.more and len(readings) >= 3  # a chunk was judged, the budget read
    assert s.run.spent == readings[-1] - readings[0]


def test_the_first_run_starts_at_the_partitions_earliest_date_and_the_next_after_the_last() -> None:
    a1 = ev("VA1", D0, evaluation=True, docs=[doc("plan_of_care")], patient_ref="P-A")
    s = Stream()
    s.visit(a1)
    assert read_state(s.store.get(P, run_key(P))).since == D0
    s.daily(D0 + timedelta(days=5))
    assert read_state(s.store.get(P, run_key(P))).done_through == D0 + timedelta(days=5)
    assert s.ids == []
    s.daily(D0 + timedelta(days=40))  # down 35 days: dates 6..40 caught up in one run
    state = read_state(s.store.get(P, run_key(P)))
    assert state.done_through == D0 + timedelta(days=40)
    # CERTIFICATION_DUE as of first day + 21 (the first date it was due), once.
    assert len(s.ids) == 1
    assert set(s.ids) == set(audit_ids([a1], D0 + timedelta(days=40)))


def test_run_date_is_the_clinics_date_once_its_clock_reads_the_daily_time() -> None:
    from datetime import time
    from zoneinfo import ZoneInfo

    from streams.notice_run import run_date

    chicago = ZoneInfo("America/Chicago")
    at = time(7, 0)
    # 12:59Z on 2026-03-08 (the spring-forward day) is 07:59 CDT: that day's run is due.
    assert run_date(datetime(2026, 3, 8, 12, 59, tzinfo=UTC), chicago, at) == date(2026, 3, 8)
    # 11:59Z is 06:59 CDT: still the day before's.
    assert run_date(datetime(2026, 3, 8, 11, 59, tzinfo=UTC), chicago, at) == date(2026, 3, 7)
    # 05:30Z on 2026-11-02 is 23:30 CST of the 1st (the clinic's date, not UTC's).
    assert run_date(datetime(2026, 11, 2, 5, 30, tzinfo=UTC), chicago, at) == date(2026, 11, 1)


def test_owners_after_lists_each_patient_once_in_key_order_with_in_flight_writes() -> None:
    store = DictStore()
    chain = Chain()
    txn = chain.begin()
    keys = [b"P1", b"P1\x1fV1", b"P1\x1fV2", b"P1 x\x1fV1", b"P10\x1fV1", b"P1~", b"\x00tally-0"]
    for k in keys:
        txn.put(store, P, k, b"v")
    commit_now(txn)
    # An in-flight transaction adds a patient and writes another's visit.
    flight = chain.begin()
    flight.put(store, P, b"P0\x1fV9", b"v")
    flight.put(store, P, b"P10\x1fV2", b"v")
    later = chain.begin()
    owners = [b"P0", b"P1", b"P1 x", b"P10", b"P1~"]  # sorted bytes; no partition key
    assert later.owners_after(store, P, None, 100) == owners
    walked: list[bytes] = []
    cursor = None
    while True:  # in chunks of 2, as the daily run walks
        got = later.owners_after(store, P, cursor, 2)
        walked += got
        if len(got) < 2:
            break
        cursor = got[-1]
    assert walked == owners
