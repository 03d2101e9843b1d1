"""Episode identity and the semantics that survive real feeds (EVENTS.md "v1 additions": an
episode is (patient, discipline) split at initial evaluations and after a discharge_summary,
or the EHR's episode_ref; re-delivery changes nothing; a corrected event replaces the earlier
one; a late visit is judged at its own date; an episode whose start was never seen yields no
episode findings and the Outcome says so). Progress-report counts: CMS Pub. 100-02, Ch. 15,
sec. 220.3 D (10 treatment days, the evaluation is day 1)."""

from __future__ import annotations

from datetime import date
from typing import Any

from compliance import Engine, EpisodeStatus, PatientHistory
from tests.factories import doc, episode_visit, model
from tests.unit.compliance.episode_helpers import NOW, day, flagged, rules, run

D0 = date(2026, 3, 2)
OVERDUE = "PROGRESS_REPORT_OVERDUE"
START_RULES = {
    "PROGRESS_REPORT_OVERDUE",
    "PROGRESS_REPORT_BY_ASSISTANT",
    "PLAN_OF_CARE_MISSING",
    "CERTIFICATION_MISSING",
    "RECERTIFICATION_MISSING",
}


def evaluation(visit_id: str, n: int, **kw: Any) -> dict[str, Any]:
    docs = [doc("plan_of_care"), doc("certification", author="MD"), *kw.pop("docs", [])]
    return episode_visit(visit_id, day(D0, n), evaluation=True, docs=docs, **kw)


def tx(visit_id: str, n: int, **kw: Any) -> dict[str, Any]:
    return episode_visit(visit_id, day(D0, n), **kw)


def eleven_days(prefix: str, first: int, **kw: Any) -> list[dict[str, Any]]:
    """Treatment visits on 11 consecutive days from `first`."""
    return [tx(f"{prefix}{i:02d}", first + i - 1, **kw) for i in range(1, 12)]


def test_start_never_seen_yields_no_episode_findings_and_the_outcome_says_so(
    engine: Engine,
) -> None:
    # No evaluation, no episode_start_date: no plan, no report, no certification for 40 days,
    # and still no episode finding (never guessed); the outcome reports start_unseen.
    visits = [tx(f"V-{i:02d}", 2 * i) for i in range(1, 21)]
    out = run(engine, visits)
    assert not any(START_RULES & set(rules(o)) for o in out)
    assert all(o.episode_status is EpisodeStatus.START_UNSEEN for o in out)
    assert all(o.episode_start_unseen for o in out)
    # KX still applies (per patient and year, not per episode): 20 x 150.00 > 2,480.00.
    pricey = [tx(f"V-{i:02d}", 2 * i, amount="150.00") for i in range(1, 21)]
    out = run(engine, pricey)
    assert flagged(out, "KX_MODIFIER_MISSING")[0] == "V-17"  # 17 x 150 = 2,550.00


def test_episode_start_date_anchors_an_episode_whose_evaluation_was_not_seen(
    engine: Engine,
) -> None:
    visits = [tx(f"V-{i:02d}", i, episode_start_date=D0.isoformat()) for i in range(1, 12)]
    out = run(engine, visits)
    assert all(o.episode_status is EpisodeStatus.EVALUATED for o in out)
    # D0 is day 1 (never seen as a visit, the EHR says the episode began then): no service
    # on D0 was seen, so V-01..V-10 are treatment days 1-10 and V-11 is day 11.
    assert flagged(out, OVERDUE) == ["V-11"]
    assert flagged(out, "PLAN_OF_CARE_MISSING") == [f"V-{i:02d}" for i in range(1, 12)]


def test_stateless_evaluation_runs_no_episode_rules(engine: Engine) -> None:
    o = engine.evaluate(model(tx("V-1", 40, episode_start_date=D0.isoformat())), NOW)
    assert o.alerts == [] and o.episode_status is EpisodeStatus.NO_HISTORY and o.history is None


def test_discharge_closes_and_a_new_evaluation_opens(engine: Engine) -> None:
    # Episode 1: evaluation + 5 treatment days, the last with a discharge summary. Episode 2
    # opens with a new evaluation: its count starts again at day 1.
    first = [evaluation("A-EV", 0), *[tx(f"A-{i}", i) for i in range(1, 6)]]
    first[-1] = tx("A-5", 5, docs=[doc("discharge_summary")])
    second = [evaluation("B-EV", 20), *eleven_days("B-", 21)]
    out = run(engine, [*first, *second])
    # B-EV is day 1; B-01..B-09 days 2-10; B-10 day 11.
    assert flagged(out, OVERDUE) == ["B-10", "B-11"]


def test_after_a_discharge_the_next_visit_starts_a_new_episode(engine: Engine) -> None:
    # "a new one starts ... after a discharge_summary": the first visit after it is day 1 of
    # a new episode whose start was seen (the boundary was observed). It has no plan: flagged.
    first = [evaluation("A-EV", 0), tx("A-1", 1, docs=[doc("discharge_summary")])]
    out = run(engine, [*first, *eleven_days("C-", 10)])
    assert out[2].episode_status is EpisodeStatus.EVALUATED
    assert flagged(out, OVERDUE) == ["C-11"]  # C-01 is day 1
    assert "PLAN_OF_CARE_MISSING" in rules(out[2])


def test_new_evaluation_without_discharge_opens_a_new_episode(engine: Engine) -> None:
    visits = [evaluation("A-EV", 0), *eleven_days("A-", 1)[:9], evaluation("B-EV", 10)]
    visits += [tx(f"B-{i:02d}", 10 + i) for i in range(1, 11)]
    out = run(engine, visits)
    # Without the split A's 10 treatment days + B-EV would make B-EV day 11.
    assert flagged(out, OVERDUE) == ["B-10"]


def test_disciplines_are_separate_episodes(engine: Engine) -> None:
    pt = [evaluation("PT-EV", 0), *[tx(f"PT-{i:02d}", i) for i in range(1, 6)]]
    ot = [
        episode_visit(
            f"OT-{i:02d}",
            day(D0, i),
            discipline="OT",
            evaluation=i == 0,
            docs=[doc("plan_of_care", author="OT")] if i == 0 else [],
        )
        for i in range(0, 8)
    ]
    out = run(engine, [*pt, *ot])
    assert flagged(out, OVERDUE) == []  # 6 PT days, 8 OT days: each below 11


def test_episode_ref_names_the_episode(engine: Engine) -> None:
    # Two PT episodes at once (e.g. knee and shoulder): the refs keep them apart, and the
    # second one's evaluation does not split the first.
    knee = [evaluation("K-EV", 0, episode_ref="EP-KNEE")]
    knee += [tx(f"K-{i:02d}", i, episode_ref="EP-KNEE") for i in range(1, 11)]
    shoulder = [evaluation("S-EV", 3, episode_ref="EP-SHOULDER")]
    out = run(engine, [*knee[:4], *shoulder, *knee[4:]])
    assert flagged(out, OVERDUE) == ["K-10"]


def test_correction_replaces_the_earlier_event(engine: Engine) -> None:
    # A corrected event for V-05 adds the progress report the first one lacked: visits after
    # the correction see the report; the earlier version no longer counts.
    visits = [evaluation("V-EV", 0), *[tx(f"V-{i:02d}", i) for i in range(1, 11)]]
    corrected = tx("V-05", 5, docs=[doc("progress_report")], event_id="evt-V-05-fix")
    out = run(engine, [*visits[:10], corrected, *visits[10:], tx("V-11", 11)])
    assert flagged(out, OVERDUE) == []  # new period after day 5: V-10, V-11 are days 5, 6
    # And the other way: a correction that removes a report.
    with_report = [evaluation("V-EV", 0), *[tx(f"V-{i:02d}", i) for i in range(1, 11)]]
    with_report[5] = tx("V-05", 5, docs=[doc("progress_report")])
    removed = tx("V-05", 5, event_id="evt-V-05-fix")
    out = run(engine, [*with_report, removed, tx("V-11", 11)])
    assert flagged(out, OVERDUE) == ["V-11"]  # day 12 of an unbroken period


def test_redelivery_changes_nothing(engine: Engine) -> None:
    visits = [evaluation("V-EV", 0), *eleven_days("V-", 1)]
    h = PatientHistory()
    first = []
    for seq, v in enumerate(visits, start=1):
        o = engine.evaluate(model(v), NOW, h, seq)
        assert o.history is not None
        h = o.history
        first.append([a.alert_id for a in o.alerts])
    before = h.to_bytes()
    for seq, v in enumerate(visits, start=1):  # re-delivered after a crash: same seqs
        o = engine.evaluate(model(v), NOW, h, seq)
        assert [a.alert_id for a in o.alerts] == first[seq - 1]
        assert o.history is h
    assert h.to_bytes() == before
    assert first[-2] and first[-1]  # the overdue visits were found both times


def test_late_visit_is_judged_at_its_own_date(engine: Engine) -> None:
    # V-05 arrives last. At its own date it is treatment day 6: not overdue, although 11
    # treatment days had been seen when it arrived.
    visits = [evaluation("V-EV", 0), *eleven_days("V-", 1)]
    late = visits.pop(5)
    out = run(engine, [*visits, late])
    assert out[-1].checked.body["visit_id"] == "V-05"
    assert OVERDUE not in rules(out[-1])
    # The visits judged before it did not see it: V-10 was the 10th date seen, V-11 the 11th.
    assert flagged(out, OVERDUE) == ["V-11"]


def test_late_visit_before_the_evaluation_belongs_to_no_seen_start(engine: Engine) -> None:
    # A visit dated before the evaluation that opened the current episode, arriving late, is
    # not part of it: it is the tail of an earlier episode whose start was never seen.
    visits = [evaluation("V-EV", 10), tx("V-11", 11), tx("V-EARLY", 5)]
    out = run(engine, visits)
    assert out[-1].episode_status is EpisodeStatus.START_UNSEEN
