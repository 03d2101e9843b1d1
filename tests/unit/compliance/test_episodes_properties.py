"""Properties of the episode state with an independent oracle (EVENTS.md "v1 additions"; CMS
Pub. 100-02, Ch. 15, sec. 220.3 D for the progress-report period).

1. Arrival order: a visit's PROGRESS_REPORT_OVERDUE verdict is a function of the visits that
   arrived before it with dates of service up to its own, plus itself, judged at its own date.
   The oracle below computes exactly that, directly from the generated visits (no engine
   helper): permuting arrival order changes a verdict only through what arrived before.
2. Replay: replaying any prefix of the events against the final state (a crash restore) gives
   the same alert ids and leaves the state bytes unchanged; applying a prefix twice from
   scratch gives the same state bytes as once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from compliance import Engine, PatientHistory
from tests.factories import doc, episode_visit, model
from tests.unit.compliance.episode_helpers import NOW

D0 = date(2026, 3, 2)
MAX_DAYS = 10  # sec. 220.3 D: at least once every 10 treatment days


@dataclass(frozen=True)
class V:
    visit_id: str
    offset: int  # days after the evaluation
    service: bool
    report: str | None  # "PT" (clinician), "PTA" (assistant), "unsigned", or None

    @property
    def evaluation(self) -> bool:
        return self.offset == 0

    def payload(self, event_suffix: str = "") -> dict[str, Any]:
        docs = []
        if self.report == "unsigned":
            docs.append(doc("progress_report", signed=None))
        elif self.report is not None:
            docs.append(doc("progress_report", author=self.report))
        if self.evaluation:
            docs += [doc("plan_of_care"), doc("certification", author="MD")]
        extra: dict[str, Any] = {}
        if not self.service:
            extra["services"] = []
        data = episode_visit(
            self.visit_id,
            (D0 + timedelta(days=self.offset)).isoformat(),
            evaluation=self.evaluation,
            docs=docs,
            **extra,
        )
        data["event_id"] += event_suffix
        return data


@st.composite
def patients(draw: st.DrawFn) -> list[V]:
    # Distinct days spread over 24 days (a permutation, so shrinking does not pile them on one
    # day), plus a few visits sharing a date with another.
    days = draw(st.permutations(range(1, 25)))[: draw(st.integers(4, 24))]
    days += draw(st.lists(st.sampled_from(days), max_size=4))
    reports = st.sampled_from([*[None] * 8, "PT", "PTA", "unsigned"])
    visits = [V("V-EV", 0, True, draw(st.sampled_from([None, None, "PT"])))]
    for i, offset in enumerate(days):
        visits.append(V(f"V-{i:02d}", offset, draw(st.booleans() | st.just(True)), draw(reports)))
    return visits


def arrival(visits: list[V], rnd: Any) -> list[V]:
    """A feed's order: by date with some visits arriving late, or fully shuffled."""
    order = sorted(visits, key=lambda v: v.offset)
    if rnd.random() < 0.3:
        rnd.shuffle(order)
    else:
        for _ in range(rnd.randrange(0, 6)):
            i, j = rnd.randrange(len(order)), rnd.randrange(len(order))
            order.insert(max(i, j), order.pop(min(i, j)))  # one visit arrives later
    return order


def oracle(arrived: list[V], me: V) -> bool:
    """Is `me` overdue, judged with `arrived` (seen before it) at its own date?"""
    seen = [v for v in arrived if v.offset <= me.offset] + [me]
    if not any(v.evaluation for v in seen):
        return False  # the episode's start was not seen: not evaluated
    if not me.service:
        return False  # nothing billed on the visit
    reports = {v.offset for v in seen if v.report == "PT"}
    if me.offset in reports:
        return False  # a report dated on the visit's own date covers it
    start = max([0] + [r + 1 for r in reports if r < me.offset])
    days = {v.offset for v in seen if v.service and start <= v.offset <= me.offset}
    return len(days) > MAX_DAYS


@settings(max_examples=300, deadline=None)
@given(patients(), st.randoms(use_true_random=False))
def test_property_overdue_verdict_depends_only_on_what_arrived_before(
    visits: list[V], rnd: Any
) -> None:
    engine = _engine()
    order = arrival(visits, rnd)
    h = PatientHistory()
    for seq, v in enumerate(order, start=1):
        o = engine.evaluate(model(v.payload()), NOW, h, seq)
        assert o.history is not None
        h = o.history
        got = "PROGRESS_REPORT_OVERDUE" in [a.rule_id for a in o.alerts]
        assert got == oracle(order[: seq - 1], v), (v, seq)
        if got:
            event("a visit was overdue")


@settings(max_examples=100, deadline=None)
@given(patients(), st.randoms(use_true_random=False), st.data())
def test_property_replaying_a_prefix_changes_nothing(
    visits: list[V], rnd: Any, data: st.DataObject
) -> None:
    engine = _engine()
    events = [v.payload() for v in arrival(visits, rnd)]
    # Corrections: some visits are sent again later with another report (new event_id).
    for v in data.draw(st.lists(st.sampled_from(visits), max_size=3)):
        fixed = V(v.visit_id, v.offset, v.service, "PT" if v.report != "PT" else None)
        events.insert(data.draw(st.integers(0, len(events))), fixed.payload(event_suffix="-fix"))
    h = PatientHistory()
    first_ids, states = [], []
    for seq, e in enumerate(events, start=1):
        o = engine.evaluate(model(e), NOW, h, seq)
        assert o.history is not None
        h = o.history
        first_ids.append([a.alert_id for a in o.alerts])
        states.append(h.to_bytes())
    final = h.to_bytes()
    k = data.draw(st.integers(0, len(events)))
    for seq, e in enumerate(events[:k], start=1):  # a crash restore holds the final state
        o = engine.evaluate(model(e), NOW, h, seq)
        assert [a.alert_id for a in o.alerts] == first_ids[seq - 1]
        assert o.history is not None and o.history.to_bytes() == final
    twice = PatientHistory()
    for _ in range(2):
        for seq, e in enumerate(events[:k], start=1):
            o = engine.evaluate(model(e), NOW, twice, seq)
            assert o.history is not None
            twice = o.history
    assert twice.to_bytes() == (states[k - 1] if k else PatientHistory().to_bytes())
    assert PatientHistory.from_bytes(final).to_bytes() == final


_ENGINE: list[Engine] = []


def _engine() -> Engine:
    if not _ENGINE:
        _ENGINE.append(Engine())
    return _ENGINE[0]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.booleans(), st.booleans()), min_size=1, max_size=25)
)
def test_property_last_segment_walk_back_equals_the_forward_split(
    specs: list[tuple[int, bool, bool]],
) -> None:
    # compliance/episodes/segments.py has two ways to find a visit's episode: the forward
    # split (retention) and the walk back from the end (every judgement). They must agree, and
    # the forward split must follow EVENTS.md: a new episode at each initial evaluation and
    # after each discharge.
    from compliance.episodes.segments import last_segment, segments
    from compliance.records import INITIAL_EVALUATION, SERVICE, DocKind, DocRecord, EpisodePart
    from compliance.records import VisitRecord as Rec

    records = []
    for seq, (offset, initial, discharge) in enumerate(sorted(specs, key=lambda s: s[0])):
        day_ = D0 + timedelta(days=offset)
        docs = (DocRecord(DocKind.DISCHARGE_SUMMARY, day_),) if discharge else ()
        flags = SERVICE | (INITIAL_EVALUATION if initial else 0)
        records.append(Rec(f"V{seq}", seq, day_, "", "PT", (), EpisodePart(flags, docs=docs)))
    forward = segments(records, ("d", "PT"))
    back = last_segment(records, ("d", "PT"))
    assert (back.records, back.opened) == (forward[-1].records, forward[-1].opened)
    # Oracle for the split: boundaries before each initial evaluation and after each discharge.
    starts = [0] + [
        i
        for i in range(1, len(specs))
        if sorted(specs, key=lambda s: s[0])[i][1] or sorted(specs, key=lambda s: s[0])[i - 1][2]
    ]
    assert [len(s.records) for s in forward] == [
        b - a for a, b in zip(starts, [*starts[1:], len(specs)], strict=True)
    ]
