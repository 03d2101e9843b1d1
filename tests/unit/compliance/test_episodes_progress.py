"""PROGRESS_REPORT_OVERDUE / PROGRESS_REPORT_BY_ASSISTANT, each case next to its source:
CMS Pub. 100-02, Ch. 15, sec. 220.3 D ("The minimum progress report period shall be at least
once every 10 treatment days. The day beginning the first reporting period is the first day of
the episode of treatment regardless of whether the service provided on that day is an
evaluation, re-evaluation or treatment"; "Reports written by assistants are not complete
progress reports"). Expected treatment-day numbers are counted by hand in each test."""

from __future__ import annotations

from datetime import date
from typing import Any

from compliance import Engine
from tests.factories import doc, episode_visit
from tests.unit.compliance.episode_helpers import alert, day, flagged, rules, run

D0 = date(2026, 3, 2)
OVERDUE = "PROGRESS_REPORT_OVERDUE"
BY_ASSISTANT = "PROGRESS_REPORT_BY_ASSISTANT"


def evaluation(**kw: Any) -> dict[str, Any]:
    # Plan and certification on file from day 1, so only the progress-report rule can fire.
    return episode_visit(
        "V-EVAL",
        D0.isoformat(),
        evaluation=True,
        docs=[doc("plan_of_care"), doc("certification", author="MD")],
        **kw,
    )


def treatments(n: int, every: int = 2, first: int = 2, **kw: Any) -> list[dict[str, Any]]:
    """n treatment visits, on days first, first+every, ... after the evaluation."""
    return [
        episode_visit(f"V-{i:02d}", day(D0, first + every * (i - 1)), **kw) for i in range(1, n + 1)
    ]


def test_10th_treatment_day_is_due_11th_is_overdue(engine: Engine) -> None:
    # sec. 220.3 D: evaluation = treatment day 1; V-01..V-09 = days 2-10; V-10 = day 11.
    out = run(engine, [evaluation(), *treatments(11)])
    assert flagged(out, OVERDUE) == ["V-10", "V-11"]
    body = alert(out[10], OVERDUE)
    assert body["expected"] == {"due_by_treatment_day": 10}
    assert body["observed"]["treatment_day"] == 11
    assert body["observed"]["period_start"] == D0.isoformat()
    assert body["severity"] == "error"
    assert body["line_ids"] == ["1"] and body["amount_at_risk"] == "100.00"
    assert alert(out[11], OVERDUE)["observed"]["treatment_day"] == 12


def test_evaluation_day_is_day_1_even_with_treatment_the_same_day(engine: Engine) -> None:
    # sec. 220.3 D: the period begins on the episode's first day, evaluation or not. A second
    # visit on the evaluation day is the same treatment day (distinct dates of service).
    same_day = episode_visit("V-00", D0.isoformat())
    out = run(engine, [evaluation(), same_day, *treatments(10)])
    assert flagged(out, OVERDUE) == ["V-10"]  # V-10 is the 11th distinct date


def test_days_without_service_are_not_treatment_days(engine: Engine) -> None:
    # sec. 220.3 D: days without a treatment or evaluation encounter do not count; a visit
    # event with no service line (documentation only) is not a treatment day either.
    no_service = [
        episode_visit(f"V-N{i}", day(D0, 2 * i + 1), services=[], docs=[doc("other")])
        for i in range(1, 8)
    ]
    visits = [evaluation(), *treatments(9)]
    visits = sorted([*visits, *no_service], key=lambda v: v["date_of_service"])
    out = run(engine, [*visits, episode_visit("V-10", day(D0, 40))])
    assert flagged(out, OVERDUE) == ["V-10"]  # the 11th date with a service, 40 days in
    assert not any(rules(o) for o in out[:-1])


def test_report_by_the_therapist_restarts_the_period_the_day_after(engine: Engine) -> None:
    # sec. 220.3 D: a new period begins after each clinician's report. Report on treatment
    # day 10 (V-09): V-10 is day 1 of the new period; 10 more days pass before it is due.
    visits = [evaluation(), *treatments(21)]
    visits[9] = episode_visit("V-09", visits[9]["date_of_service"], docs=[doc("progress_report")])
    out = run(engine, visits)
    # New period from the day after V-09: V-10..V-19 = days 1-10, V-20 = day 11.
    assert flagged(out, OVERDUE) == ["V-20", "V-21"]
    assert alert(out[20], OVERDUE)["observed"]["period_start"] == day(D0, 19)  # V-09: day 18


def test_report_dated_on_the_visit_covers_that_visit(engine: Engine) -> None:
    # The 11th treatment day carries the report: the report is dated within its period.
    visits = [evaluation(), *treatments(11)]
    visits[10] = episode_visit("V-10", visits[10]["date_of_service"], docs=[doc("progress_report")])
    out = run(engine, visits)
    assert flagged(out, OVERDUE) == []


def test_report_by_physician_counts(engine: Engine) -> None:
    # sec. 220.3 D: "written by a clinician, that is, either the physician/NPP ... or the
    # therapist"; MD, DO, NP, PA are clinicians (episode_policy.toml).
    visits = [evaluation(), *treatments(11)]
    visits[9] = episode_visit(
        "V-09", visits[9]["date_of_service"], docs=[doc("progress_report", author="NP")]
    )
    assert flagged(run(engine, visits), OVERDUE) == []


def test_report_by_assistant_does_not_restart_the_period(engine: Engine) -> None:
    # sec. 220.3 D: "Reports written by assistants are not complete progress reports."
    visits = [evaluation(), *treatments(11)]
    visits[8] = episode_visit(
        "V-08", visits[8]["date_of_service"], docs=[doc("progress_report", author="PTA")]
    )
    out = run(engine, visits)
    assert flagged(out, OVERDUE) == ["V-10", "V-11"]
    assert flagged(out, BY_ASSISTANT) == ["V-10", "V-11"]
    body = alert(out[10], BY_ASSISTANT)
    assert body["severity"] == "warning"
    assert body["observed"]["assistant_reports"] == [
        {"date": visits[8]["date_of_service"], "author_credential": "PTA"}
    ]


def test_unsigned_report_does_not_count(engine: Engine) -> None:
    visits = [evaluation(), *treatments(11)]
    visits[8] = episode_visit(
        "V-08", visits[8]["date_of_service"], docs=[doc("progress_report", signed=None)]
    )
    assert flagged(run(engine, visits), OVERDUE) == ["V-10", "V-11"]


def test_re_evaluation_restarts_the_period(engine: Engine) -> None:
    # sec. 220.3 D: the period's first day may be a re-evaluation; a re-evaluation (97164 by the
    # therapist, sec. 220.3 C) closes the period like a progress report.
    visits = [evaluation(), *treatments(11)]
    visits[8] = episode_visit("V-08", visits[8]["date_of_service"], re_evaluation=True)
    assert flagged(run(engine, visits), OVERDUE) == []
    # The same with a re_evaluation document signed by the therapist on a treatment visit.
    visits[8] = episode_visit("V-08", visits[8]["date_of_service"], docs=[doc("re_evaluation")])
    assert flagged(run(engine, visits), OVERDUE) == []


def test_only_payers_following_medicare(engine: Engine) -> None:
    # EVENTS.md: PROGRESS_REPORT_OVERDUE is a Medicare rule (payer_policies.toml follows_medicare).
    visits = [evaluation(kind="commercial"), *treatments(11, kind="commercial")]
    assert flagged(run(engine, visits), OVERDUE) == []
    ma = [evaluation(kind="medicare_advantage"), *treatments(11, kind="medicare_advantage")]
    assert flagged(run(engine, ma), OVERDUE) == ["V-10", "V-11"]


def test_backdated_report_written_later_restarts_from_its_date(engine: Engine) -> None:
    # A late report "shall be written within 7 calendar days after the end of the reporting
    # period" (sec. 220.3 D): written at V-11 and dated on V-09's day, it restarts the period
    # from the day after V-09 for the visits judged after it; V-10 (judged before) keeps its
    # alert.
    visits = [evaluation(), *treatments(12)]
    v9 = visits[9]["date_of_service"]
    visits[11] = episode_visit(
        "V-11", visits[11]["date_of_service"], docs=[doc("progress_report", document_date=v9)]
    )
    out = run(engine, visits)
    assert flagged(out, OVERDUE) == ["V-10"]
