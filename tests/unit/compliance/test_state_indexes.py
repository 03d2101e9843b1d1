"""PatientHistory's kept indexes (compliance/state.py): `apply` takes a quick path, without
running retention.prune or scanning the visits, when pruning would change nothing. Oracle: the
same events applied with the quick path turned off (prune on every visit, as before it
existed), and scans of the result for the indexes - the histories must be equal in every
field and every index must match its scan (or bound it, for the lower bounds)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.records import (
    INITIAL_EVALUATION,
    SERVICE,
    DocKind,
    DocRecord,
    EpisodePart,
    KxEntry,
    LineRecord,
    Role,
    StatusState,
    VisitRecord,
)
from compliance.state import PatientHistory

D0 = date(2025, 11, 20)  # histories cross a year's end: KX folds of old years are dropped


@st.composite
def events(draw: st.DrawFn) -> list[VisitRecord]:
    out: list[VisitRecord] = []
    seq = 0
    ids = [f"V{i:02d}" for i in range(draw(st.integers(1, 30)))]
    for _ in range(draw(st.integers(1, 40))):
        seq += draw(st.integers(1, 3))
        vid = draw(st.sampled_from(ids))
        dos = D0 + timedelta(days=draw(st.integers(0, 700)))
        lines = tuple(
            LineRecord(str(i), draw(st.sampled_from(["97110", "97140"])), 1)
            for i in range(draw(st.integers(0, 2)))
        )
        part = None
        if draw(st.integers(0, 6)):
            flags = SERVICE | (INITIAL_EVALUATION if draw(st.integers(0, 5)) == 0 else 0)
            docs = ()
            if draw(st.integers(0, 6)) == 0:
                docs = (DocRecord(DocKind.DISCHARGE_SUMMARY, dos, dos, role=Role.CLINICIAN),)
            elif draw(st.integers(0, 6)) == 0:
                docs = (DocRecord(DocKind.PLAN_OF_CARE, dos, dos, plan_start=dos),)
            kx = ()
            if draw(st.booleans()):
                kx = (KxEntry(draw(st.sampled_from(["PT_SLP", "OT"])), draw(st.integers(0, 9000))),)
            part = EpisodePart(flags, draw(st.sampled_from([None, None, "E1"])), None, docs, kx)
        status = StatusState(1) if draw(st.booleans()) else None
        npi = "" if not lines and draw(st.booleans()) else "1234567893"
        unbilled = (LineRecord("9", "97140", 0),) if draw(st.integers(0, 3)) == 0 else ()
        out.append(
            VisitRecord(
                vid, seq, dos, npi, "PT", lines, part, f"e{seq}", None, unbilled, seq, status
            )
        )
    return out


def _fields(h: PatientHistory) -> tuple[Any, ...]:
    return (h.visits, h.kx_folds, h.folded_through, h.sent, h.newest, h.max_seq)


@settings(max_examples=500, deadline=None)
@given(events(), st.sampled_from([(90, 400), (10, 30), (0, 0), (200, 100)]))
def test_apply_equals_apply_with_prune_on_every_visit(
    evs: list[VisitRecord], horizons: tuple[int, int]
) -> None:
    quick = full = PatientHistory()
    for r in evs:
        quick = quick.apply(r, *horizons)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(PatientHistory, "_unpruned", lambda *a: None)
            full = full.apply(r, *horizons)
        assert _fields(quick) == _fields(full)
        for vs in full.visits:
            assert quick.versions(vs[0].visit_id) is not None
            assert quick.versions(vs[0].visit_id) == vs
        assert quick.versions("none") == ()
        # The indexes against scans of the result.
        current = [vs[-1] for vs in quick.visits]
        assert quick.newest == max((v.date_of_service for v in current), default=None)
        assert quick.max_seq == max((v.seq for v in current), default=-1)
        ids = [vs[0].visit_id for vs in quick.visits]
        assert ids == sorted(ids) and quick._ordered
        # What prune would change past the same-day horizon (retention.py): a current version
        # without an episode part is dropped; a visit's only version is stripped when it bills
        # lines; with several versions each is stripped of any same-day part.
        with_lines = [
            v.date_of_service
            for vs in quick.visits
            for v in vs
            if (v is vs[-1] and v.episode is None)
            or (v.lines if len(vs) == 1 else v.npi or v.lines or v.unbilled)
        ]
        if with_lines:
            assert quick._oldest_lines is not None and quick._oldest_lines <= min(with_lines)
        episodes = [v.date_of_service for v in current if v.episode is not None]
        if episodes:
            assert quick._oldest_episode is not None and quick._oldest_episode <= min(episodes)
        # A history read back (the worker's usual case) takes the same next steps.
        again = PatientHistory(quick.visits, quick.kx_folds, quick.folded_through)
        assert _fields(again)[:3] == _fields(quick)[:3]


def test_the_quick_path_is_taken_for_the_usual_visit_and_not_when_pruning_is_due() -> None:
    # Oracle: retention.py's rule by hand: a record keeps its same-day part while its date is
    # within 90 days of the newest (on or after newest - 90). 13 visits a week apart with
    # billed lines (days 0-84); a visit on day 90 leaves day 0 inside; one on day 91 does not.
    def visit(vid: str, seq: int, days: int) -> VisitRecord:
        line = (LineRecord("1", "97110", 2),)
        dos = D0 + timedelta(days=days)
        return VisitRecord(vid, seq, dos, "1234567893", "PT", line, EpisodePart(SERVICE))

    h = PatientHistory()
    for i in range(13):
        h = h.apply(visit(f"V{i:02d}", i, 7 * i))
    assert h._unpruned(list(h.visits), (visit("V13", 13, 90),), False, 90, 400) is not None
    late = visit("V14", 14, 91)
    assert h._unpruned(list(h.visits), (late,), False, 90, 400) is None
    assert h.apply(late).versions("V00")[0].lines == ()  # the full path strips it


def test_a_history_built_out_of_order_still_applies_and_replaces_by_visit_id() -> None:
    a = (VisitRecord("A", 1, D0, "1234567893", "PT", (), EpisodePart(SERVICE)),)
    b = (VisitRecord("B", 2, D0, "1234567893", "PT", (), EpisodePart(SERVICE)),)
    h = PatientHistory((b, a))  # not in visit_id order (tests and tools may build one)
    assert not h._ordered
    fixed = VisitRecord("A", 3, D0, "1234567893", "PT", (), EpisodePart(SERVICE))
    after = h.apply(fixed)
    assert [vs[0].visit_id for vs in after.visits] == ["A", "B"]
    assert after.versions("A") == (a[0], fixed)
    status = StatusState(2)
    changed = h.with_current({"A": a[0].with_status(status)})
    assert changed.versions("A")[-1].status == status and changed.versions("B") == b
    # The same id twice (only a hand-built history can have it): the last entry is the
    # visit's, for versions() and for apply alike.
    twice = PatientHistory((b, a, (VisitRecord("B", 3, D0, "", "PT", (), EpisodePart(SERVICE)),)))
    later = VisitRecord("B", 5, D0, "", "PT", (), EpisodePart(SERVICE))
    applied = twice.apply(later)
    assert [r.seq for r in applied.versions("B")] == [3, 5]
    assert applied.apply(later) == applied


def test_kx_folds_of_a_year_no_longer_kept_are_dropped_when_the_newest_date_moves_on() -> None:
    # retention.py: folded KX totals are kept for the newest date's year and the one before.
    # A (2025-01-10, discharged: its episode closed) is folded when B arrives 401 days later
    # (2026-02-15); C (2027-01-02) moves the newest date into 2027 and nothing else is due
    # (B is within both horizons of C, without a same-day part): 2025's total must go.
    def visit(vid: str, seq: int, dos: date, docs: tuple[DocRecord, ...] = ()) -> VisitRecord:
        # Each an initial evaluation: its own episode (A's discharge is not kept as what
        # opened the next one).
        flags = SERVICE | INITIAL_EVALUATION
        part = EpisodePart(flags, None, None, docs, (KxEntry("PT_SLP", 1000),))
        return VisitRecord(vid, seq, dos, "", "PT", (), part)

    a_day = date(2025, 1, 10)
    discharge = (DocRecord(DocKind.DISCHARGE_SUMMARY, a_day, a_day, role=Role.CLINICIAN),)
    h = PatientHistory().apply(visit("A", 1, a_day, discharge))
    h = h.apply(visit("B", 2, date(2026, 2, 15)))
    assert [(f.year, f.cents) for f in h.kx_folds] == [(2025, 1000)]
    h = h.apply(visit("C", 3, date(2027, 1, 2)))
    assert h.kx_folds == ()
    assert [vs[0].visit_id for vs in h.visits] == ["B", "C"]


def test_folds_given_out_of_order_are_put_in_order_as_prune_leaves_them() -> None:
    from compliance.episodes.accrual import KxFold

    folds = (KxFold(2026, "PT_SLP", 5, 0), KxFold(2025, "OT", 7, 1))  # not (year, bucket) order
    a = (VisitRecord("A", 1, date(2026, 3, 1), "", "PT", (), EpisodePart(SERVICE)),)
    h = PatientHistory((a,), folds)
    after = h.apply(VisitRecord("B", 2, date(2026, 3, 2), "", "PT", (), EpisodePart(SERVICE)))
    assert after.kx_folds == (KxFold(2025, "OT", 7, 1), KxFold(2026, "PT_SLP", 5, 0))
