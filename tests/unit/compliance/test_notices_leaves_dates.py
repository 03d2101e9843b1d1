"""`notices.leaves_dates` (Outcome.dates_unchanged) is exact: when it says a new visit cannot
change the date-driven notices of any date, `due_between` over the whole span finds the same
obligations with the visit as without it. The worker relies on it to skip judging the dates
after a late visit again (streams/processor.py; EVENTS.md "ComplianceNotice v1": a late visit
loses nothing the daily runs would have found with it, docs/rules.md "Daily run: catch-up and
delivery").

Oracle: `due_between` of the history's records with and without the visit (the date-by-date
judgement, itself compared with a plain loop of `due_on` in test_notices_property.py), on the
random histories of test_notices_property.py and a late visit dropped into them: a treatment
visit (sometimes with documents, an evaluation, an episode_start_date, the other discipline,
or another payer) on a random date of the span. A weaker test (no payer or discipline check,
or a visit first of its episode allowed) fails here: see the cases below the property.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compliance import Engine, PatientHistory
from compliance.notices import due_between
from tests.factories import model
from tests.unit.compliance.test_notices_property import (
    AMOUNTS,
    NOW,
    Doc,
    Patient,
    Visit,
    docs_of,
    engine,
    patients,
)


def _history(eng: Engine, start: date, p: Patient) -> tuple[PatientHistory, int]:
    h = PatientHistory()
    seq = 0
    ordered = sorted(enumerate(p.visits), key=lambda iv: (iv[1].day, iv[0]))
    for i, v in ordered:
        seq += 1
        out = eng.evaluate(model(v.payload(p.ref, start, f"V-{i}", p.medicare)), NOW, h, seq)
        assert out.history is not None
        h = out.history
    return h, seq


def _obligations(eng: Engine, h: PatientHistory, a: date, b: date) -> set[tuple[str, str, str]]:
    records = [vs[-1] for vs in h.visits]
    return {(n.kind, n.episode, n.identity) for n in due_between(records, a, b, eng.rules)}


@st.composite
def late_visits(draw: st.DrawFn, p: Patient) -> tuple[Visit, bool]:
    """A visit on a day of the patient's span (its own or another discipline), and whether
    its payer is the patient's (else the other kind: Medicare <-> commercial)."""
    last = max(v.day for v in p.visits)
    disciplines = sorted({v.discipline for v in p.visits})
    discipline = draw(st.sampled_from([*disciplines, "PT", "OT"]))
    docs: tuple[Doc, ...] = draw(st.one_of(st.just(()), st.just(()), docs_of(discipline)))
    visit = Visit(
        draw(st.integers(-3, last + 3)),
        discipline,
        draw(st.integers(0, 9)) == 0,
        draw(AMOUNTS),
        docs,
    )
    return visit, draw(st.integers(0, 5)) != 0


@given(patients(), st.data())
@settings(
    max_examples=int(os.environ.get("NOTICES_EXAMPLES", "40")) * 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_a_visit_said_to_leave_the_dates_changes_no_dates_obligation(
    case: tuple[date, list[Patient]], data: st.DataObject
) -> None:
    start, pats = case
    eng = engine()
    p = pats[0]
    before, seq = _history(eng, start, p)
    visit, same_payer = data.draw(late_visits(p), label="late visit")
    medicare = p.medicare if same_payer else not p.medicare
    late = model(visit.payload(p.ref, start, "LATE", medicare))
    out = eng.evaluate(late, NOW, before, seq + 1)
    assert out.history is not None
    days = [r.date_of_service for vs in out.history.visits for r in vs]
    a, b = min(days) - timedelta(days=3), max(days) + timedelta(days=120)
    changed = _obligations(eng, before, a, b) != _obligations(eng, out.history, a, b)
    unchanged = out.dates_unchanged()
    event(f"dates_unchanged={unchanged}, obligations changed={changed}")
    if unchanged:
        assert not changed, (visit, medicare)


def _plain(day: int, discipline: str = "PT", evaluation: bool = False) -> Visit:
    return Visit(day, discipline, evaluation, "60.00", ())


def _outcome(
    visits: list[Visit],
    late: Visit,
    medicare: bool = True,
    late_medicare: bool = True,
    start_date: date | None = None,
) -> Any:
    eng = engine()
    start = date(2026, 3, 2)
    p = Patient("P-0", medicare, tuple(visits))
    before, seq = _history(eng, start, p)
    body = late.payload("P-0", start, "LATE", late_medicare)
    if start_date is not None:
        body["episode_start_date"] = start_date.isoformat()
    out = eng.evaluate(model(body), NOW, before, seq + 1)
    return eng, before, out


def _named(visits: list[Visit], late: Visit) -> tuple[Engine, PatientHistory, Any]:
    """The visits as one EHR-named episode (episode_ref E1), then `late` of it."""
    eng = engine()
    start = date(2026, 3, 2)
    h = PatientHistory()
    for i, v in enumerate([*visits, late]):
        body = v.payload("P-0", start, f"V-{i}" if i < len(visits) else "LATE", True)
        body["episode_ref"] = "E1"
        result = eng.evaluate(model(body), NOW, h, i + 1)
        if i == len(visits):
            return eng, h, result
        assert result.history is not None
        h = result.history
    raise AssertionError("unreachable")


def test_a_plain_visit_inside_an_episode_leaves_the_dates() -> None:
    eng, before, out = _outcome([_plain(0, evaluation=True), _plain(2), _plain(9)], _plain(5))
    assert out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    assert _obligations(eng, before, a, b) == _obligations(eng, out.history, a, b)


def test_a_visit_before_an_implicit_episodes_evaluation_leaves_the_dates() -> None:
    # Dated before the evaluation: alone in an episode of its own whose start is never seen
    # (segments.py), so nothing falls due for it; the evaluation's episode is as before.
    eng, before, out = _outcome([_plain(3, evaluation=True), _plain(5), _plain(30)], _plain(1))
    assert out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    assert _obligations(eng, before, a, b)  # the evaluation's episode has some
    assert _obligations(eng, before, a, b) == _obligations(eng, out.history, a, b)


def test_a_visit_before_a_named_episodes_evaluation_does_not_leave_the_dates() -> None:
    # An EHR-named episode is never split: the visit becomes its first record, so the
    # episode is no longer opened by its evaluation and its first day is gone (no
    # episode_start_date): the obligations change (here they vanish).
    eng, h, out = _named([_plain(3, evaluation=True), _plain(5), _plain(30)], _plain(1))
    assert not out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    assert _obligations(eng, h, a, b) != _obligations(eng, out.history, a, b)


def test_a_visit_opening_an_episode_does_not_leave_the_dates() -> None:
    # After a discharge: the next episode starts with it (segments.py), a new first day.
    discharged = Visit(4, "PT", False, "60.00", (Doc("discharge_summary"),))
    eng, before, out = _outcome([_plain(0, evaluation=True), discharged, _plain(12)], _plain(6))
    assert not out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    # The oracle agrees that this one changes the dates: CERTIFICATION_DUE of the episode
    # that now starts on day 6 instead of day 12.
    assert _obligations(eng, before, a, b) != _obligations(eng, out.history, a, b)


def test_a_visit_of_another_payer_kind_does_not_leave_the_dates() -> None:
    # A Medicare visit late into a commercial patient's episode: the dates where it is the
    # latest record follow Medicare, so notices fall due there (the oracle shows it).
    visits = [_plain(0, evaluation=True), _plain(2), _plain(40)]
    eng, before, out = _outcome(visits, _plain(25), medicare=False, late_medicare=True)
    assert not out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    assert _obligations(eng, before, a, b) != _obligations(eng, out.history, a, b)


def test_a_visit_with_documents_an_evaluation_or_a_start_does_not_leave_the_dates() -> None:
    base = [_plain(0, evaluation=True), _plain(2), _plain(9)]
    _, _, out = _outcome(base, Visit(5, "PT", False, "60.00", (Doc("certification", "MD"),)))
    assert not out.dates_unchanged()
    _, _, out = _outcome(base, _plain(5, evaluation=True))
    assert not out.dates_unchanged()
    # An episode_start_date given late moves the episode's first day (segments.Segment.first_day:
    # the latest given start): CERTIFICATION_DUE's window moves with it.
    eng, before, out = _outcome(base, _plain(5), start_date=date(2026, 2, 20))
    assert not out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    assert _obligations(eng, before, a, b) != _obligations(eng, out.history, a, b)


def test_a_visit_of_another_discipline_in_a_named_episode_does_not_leave_the_dates() -> None:
    # An EHR-named PT episode certified through the CY 2025 referral exception (a signed PT
    # referral and the plan sent at the evaluation: certs.referral_exception reads the
    # discipline of the date's latest record). An OT visit of the same episode_ref documented
    # late on day 22: on the dates where it is the latest record the referral no longer
    # matches, so CERTIFICATION_DUE falls due there (the oracle shows it).
    evaluation = Visit(
        0, "PT", True, "60.00", (Doc("plan_of_care", sent=True), Doc("referral", "MD"))
    )
    eng, h, out = _named([evaluation, _plain(10), _plain(40)], _plain(22, "OT"))
    assert not out.dates_unchanged()
    a, b = date(2026, 2, 1), date(2026, 8, 1)
    assert _obligations(eng, h, a, b) != _obligations(eng, out.history, a, b)
