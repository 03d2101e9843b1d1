"""Format 3 (compliance/state_layout.py): a patient's history as one key per visit and a head.

Oracle: the history kept in memory by `PatientHistory.apply` (what `audit` keeps, and what the
worker kept in format 2). The table is a plain dict of key -> value here; the worker's
transaction and stores add nothing to what these functions decide (their own tests:
tests/unit/streams/test_transaction.py, test_tables.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.records import SERVICE, EpisodePart, KxEntry, LineRecord, VisitRecord
from compliance.state import PatientHistory, history_of
from compliance.state_layout import (
    EMPTY,
    SEP,
    Stored,
    changes,
    decode_visit,
    encode_visit,
    read,
    visit_key,
    visits_prefix,
)

P = b"P-1"
HORIZON, EPISODE_HORIZON = 20, 40  # small, so that random histories prune and fold


def kx_records() -> st.SearchStrategy[VisitRecord]:
    return st.builds(
        VisitRecord,
        st.sampled_from([f"V{i}" for i in range(12)]),
        st.just(0),  # replaced by the feed's order (seq = offset)
        st.dates(date(2025, 11, 1), date(2027, 2, 28)),
        st.sampled_from(["1234567893", ""]),
        st.just("PT"),
        st.just((LineRecord("1", "97110", 2, ("GP",), "31.20"),)),
        st.builds(
            EpisodePart,
            st.just(SERVICE),
            st.none(),
            st.none(),
            st.just(()),
            st.tuples(st.builds(KxEntry, st.sampled_from(["PT_SLP", "OT"]), st.integers(0, 9_999))),
        ),
    )


def feed(draw: list[VisitRecord]) -> list[VisitRecord]:
    return [
        VisitRecord(r.visit_id, seq, r.date_of_service, r.npi, r.discipline, r.lines, r.episode)
        for seq, r in enumerate(draw)
    ]


def load(table: dict[bytes, bytes]) -> Stored:
    prefix = visits_prefix(P)
    visits = sorted((k, v) for k, v in table.items() if k.startswith(prefix))
    head = table.get(P)
    return EMPTY if head is None and not visits else read(P, head, visits)


def step(table: dict[bytes, bytes], r: VisitRecord) -> list[tuple[bytes, bytes | None]]:
    before = load(table)
    after = before.history.apply(r, HORIZON, EPISODE_HORIZON)
    writes, _ = changes(P, before, after, (r.visit_id, r.seq))
    return writes


def write(table: dict[bytes, bytes], writes: list[tuple[bytes, bytes | None]]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def kx_total(h: PatientHistory) -> Counter[tuple[int, str]]:
    """Every KX amount the history accounts for: folded totals plus its live visits', for the
    years the history keeps totals of (the newest date's and the one before)."""
    total: Counter[tuple[int, str]] = Counter()
    if h.newest is None:
        return total
    for f in h.kx_folds:
        total[(f.year, f.bucket)] += f.cents
    for versions in h.visits:
        current = versions[-1]
        if current.episode is not None:
            for e in current.episode.kx:
                total[(current.date_of_service.year, e.bucket)] += e.cents
    return Counter({k: v for k, v in total.items() if k[0] >= h.newest.year - 1 and v})


def same(a: PatientHistory, b: PatientHistory) -> bool:
    return (a.visits, a.kx_folds, a.folded_through) == (b.visits, b.kx_folds, b.folded_through)


@settings(max_examples=300, deadline=None)
@given(st.lists(kx_records(), max_size=30))
def test_property_the_table_holds_the_history_kept_in_memory(draw: list[VisitRecord]) -> None:
    table: dict[bytes, bytes] = {}
    memory = PatientHistory()
    for r in feed(draw):
        write(table, step(table, r))
        memory = memory.apply(r, HORIZON, EPISODE_HORIZON)
        stored = load(table)
        assert same(stored.history, memory)
        # exactly one key per visit kept, and the head only once something was folded
        assert sorted(k for k in table if k != P) == sorted(
            visit_key(P, vs[0].visit_id) for vs in memory.visits
        )
        assert (P in table) == bool(memory.kx_folds or memory.folded_through)


@settings(max_examples=300, deadline=None)
@given(st.lists(kx_records(), min_size=1, max_size=40), st.data())
def test_property_replaying_inputs_over_their_own_result_changes_nothing(
    draw: list[VisitRecord], data: st.DataObject
) -> None:
    # A crash after some batches' state reached the changelog (whole: one record batch per
    # partition and transaction) and before their input offsets were committed: the next owner
    # restores that state and processes those inputs again. Oracle: the history kept in memory,
    # which never replays; and a replay writes nothing. Corrections and visits beyond the
    # horizon (folded as they arrive, no record kept) included.
    records = feed(draw)
    committed = data.draw(st.integers(0, len(records) - 1))  # inputs before it were committed
    durable = data.draw(st.integers(committed + 1, len(records)))  # state of these is durable
    table: dict[bytes, bytes] = {}
    memory = PatientHistory()
    for r in records[:durable]:
        write(table, step(table, r))
        memory = memory.apply(r, HORIZON, EPISODE_HORIZON)
    restored = dict(table)
    for r in records[committed:durable]:  # re-delivered
        assert step(restored, r) == []
    assert same(load(restored).history, memory)
    for r in records[durable:]:  # and the stream goes on as if nothing happened
        write(restored, step(restored, r))
        memory = memory.apply(r, HORIZON, EPISODE_HORIZON)
        assert same(load(restored).history, memory)
    assert kx_total(load(restored).history) == kx_total(memory)


def test_a_format_2_history_is_read_and_written_again_in_format_3() -> None:
    records = feed(
        [
            VisitRecord("A", 0, date(2026, 1, 5), "1", "PT", (LineRecord("1", "97110", 1),)),
            VisitRecord("B", 0, date(2026, 1, 7), "1", "PT", (LineRecord("1", "97140", 2),)),
        ]
    )
    old = history_of(records)
    table = {P: old.to_bytes()}  # what a format 2 worker left
    stored = load(table)
    assert stored.legacy and same(stored.history, old)
    after = stored.history.apply(
        VisitRecord("C", 9, date(2026, 1, 9), "1", "PT", (LineRecord("1", "97530", 1),))
    )
    writes, _ = changes(P, stored, after)
    write(table, writes)
    # every visit now under its own key, the head rewritten in format 3
    assert sorted(table) == [P, P + SEP + b"A", P + SEP + b"B", P + SEP + b"C"]
    again = load(table)
    assert not again.legacy and same(again.history, after)


def test_a_visit_record_is_small() -> None:
    # issue 19: ~150 bytes per visit instead of the whole history
    r = VisitRecord(
        "VISIT-000123",
        123456,
        date(2026, 3, 2),
        "1234567893",
        "PT",
        (
            LineRecord("1", "97110", 2, ("GP",), "62.40"),
            LineRecord("2", "97140", 1, ("GP",), "31.20"),
        ),
        EpisodePart(SERVICE, None, None, (), (KxEntry("PT_SLP", 9360, (), 2, 0),)),
    )
    raw = encode_visit((r,))
    assert len(raw) < 150
    assert decode_visit(raw) == (r,)


def test_a_redelivered_visit_folded_as_it_arrived_is_not_counted_twice() -> None:
    # The visit is beyond the episode horizon when it arrives: folded at once, no record kept.
    # A re-delivery (a crash before its offset was committed) must not fold it again.
    new = VisitRecord(
        "NEW", 0, date(2027, 1, 1), "", "PT", (), EpisodePart(SERVICE, kx=(KxEntry("PT_SLP", 500),))
    )
    late = VisitRecord(
        "LATE", 1, date(2026, 1, 1), "", "PT", (), EpisodePart(SERVICE, kx=(KxEntry("PT_SLP", 7),))
    )
    table: dict[bytes, bytes] = {}
    for r in (new, late):
        write(table, step(table, r))
    assert kx_total(load(table).history) == Counter({(2027, "PT_SLP"): 500, (2026, "PT_SLP"): 7})
    assert step(table, late) == []  # re-delivered: nothing to write
    # a new version of it (a higher seq) is a correction, not a re-delivery
    corrected = VisitRecord(
        "LATE",
        2,
        late.date_of_service,
        "",
        "PT",
        (),
        EpisodePart(SERVICE, kx=(KxEntry("PT_SLP", 9),)),
    )
    assert step(table, corrected) != []


def test_visit_keys_beside_a_format_2_head_are_merged_newest_version_first() -> None:
    # A rolling deploy: this format wrote A and B for a patient with no head yet; an earlier
    # version then took the patient as new and wrote a format 2 value holding only C (and a
    # newer version of B). Nothing is lost: each visit's newest version wins.
    day = date(2026, 1, 5)
    a = VisitRecord("A", 1, day, "1", "PT", (LineRecord("1", "97110", 1),))
    b_old = VisitRecord("B", 2, day, "1", "PT", (LineRecord("1", "97110", 1),))
    b_new = VisitRecord("B", 4, day, "1", "PT", (LineRecord("1", "97140", 2),))
    c = VisitRecord("C", 3, day, "1", "PT", (LineRecord("1", "97530", 1),))
    table = {visit_key(P, "A"): encode_visit((a,)), visit_key(P, "B"): encode_visit((b_old,))}
    table[P] = history_of([c, b_new]).to_bytes()
    stored = load(table)
    assert stored.legacy
    assert {vs[0].visit_id: vs[-1] for vs in stored.history.visits} == {"A": a, "B": b_new, "C": c}


def test_the_notices_published_are_kept_in_the_head_and_written_when_they_change() -> None:
    # compliance/notices.py: a notice id is published once per patient (EVENTS.md: "a notice
    # whose obligation is met is not repeated"); the ids live in the head (Head.notices).
    table: dict[bytes, bytes] = {}
    r = feed([VisitRecord("V1", 0, date(2026, 3, 2), "1234567893", "PT")])[0]
    write(table, step(table, r))
    assert P not in table  # nothing folded, nothing sent: no head
    before = load(table)
    after = before.history.with_sent(["n-1", "n-2"])
    writes, stored = changes(P, before, after, None)
    assert [k for k, _ in writes] == [P]  # the head only; the visit is unchanged
    write(table, writes)
    assert load(table).history.sent == ("n-1", "n-2") == stored.history.sent
    # an id already held changes nothing
    again = load(table)
    assert changes(P, again, again.history.with_sent(["n-2"]), None)[0] == []
