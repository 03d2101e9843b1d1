"""PLAN_OF_CARE_MISSING, CERTIFICATION_MISSING and RECERTIFICATION_MISSING, each case next to its
source: CMS Pub. 100-02, Ch. 15, sec. 220.1.2 (plan of care), sec. 220.1.3 B (timing of initial
certification: "dated in the 30 days following the first day of treatment (including
evaluation). If the order to certify is verbal, it must be followed within 14 days by a
signature to be timely"), sec. 220.1.3 C (recertification "at least every 90 days"), sec.
220.1.3 D (delayed certification); CY 2025 PFS final rule, 89 FR 97710, 97912-97918 (the order
or referral exception from 2025-01-01). Day numbers are calendar days after the first day."""

from __future__ import annotations

from datetime import date
from typing import Any

from compliance import Engine
from tests.factories import doc, episode_visit
from tests.unit.compliance.episode_helpers import alert, day, flagged, run

D0 = date(2026, 3, 2)
PLAN = "PLAN_OF_CARE_MISSING"
CERT = "CERTIFICATION_MISSING"
RECERT = "RECERTIFICATION_MISSING"


def ev(docs: list[dict[str, Any]], start: date = D0, **kw: Any) -> dict[str, Any]:
    return episode_visit("V-EVAL", start.isoformat(), evaluation=True, docs=docs, **kw)


def tx(visit_id: str, n: int, start: date = D0, **kw: Any) -> dict[str, Any]:
    # A progress report on every treatment visit keeps PROGRESS_REPORT_OVERDUE out of the way.
    docs = [doc("progress_report"), *kw.pop("docs", [])]
    return episode_visit(visit_id, day(start, n), docs=docs, **kw)


# --- plan of care (sec. 220.1.2; 42 CFR 410.61(b)) ---------------------------------------------


def test_treatment_without_a_signed_plan_is_flagged_for_any_payer(engine: Engine) -> None:
    # EVENTS.md's table scopes PLAN_OF_CARE_MISSING to no payer: commercial too.
    for kind in ("medicare", "commercial"):
        out = run(engine, [ev([], kind=kind), tx("V-1", 2, kind=kind)])
        assert flagged(out, PLAN) == ["V-1"], kind
        assert alert(out[1], PLAN)["amount_at_risk"] == "100.00"


def test_evaluation_visit_may_treat_before_the_plan_is_written(engine: Engine) -> None:
    # sec. 220.1.2: the clinician who establishes the plan may treat at the evaluation visit.
    ev_and_treat = ev([])
    ev_and_treat["services"].append(
        {"line_id": "2", "cpt": "97110", "units": 1, "minutes": 15, "modifiers": ["GP"]}
    )
    ev_and_treat["total_timed_minutes"] = 15
    ev_and_treat["total_treatment_minutes"] = 45
    assert flagged(run(engine, [ev_and_treat]), PLAN) == []


def test_unsigned_plan_does_not_count_and_a_signed_one_dated_before_does(engine: Engine) -> None:
    unsigned = run(engine, [ev([doc("plan_of_care", signed=None)]), tx("V-1", 2)])
    assert flagged(unsigned, PLAN) == ["V-1"]
    signed = run(engine, [ev([doc("plan_of_care")]), tx("V-1", 2)])
    assert flagged(signed, PLAN) == []


def test_plan_written_on_a_later_visit_covers_only_later_visits(engine: Engine) -> None:
    # "on or before the date of service", judged with what was seen: V-1 had no plan yet.
    out = run(
        engine, [ev([]), tx("V-1", 2), tx("V-2", 4, docs=[doc("plan_of_care")]), tx("V-3", 6)]
    )
    assert flagged(out, PLAN) == ["V-1"]


# --- initial certification (sec. 220.1.3 B) -------------------------------------------------


def plan_only() -> dict[str, Any]:
    return ev([doc("plan_of_care")])


def test_certification_due_after_day_30_not_on_day_30(engine: Engine) -> None:
    # "dated in the 30 days following the first day": a visit on day 30 may still be
    # uncertified; on day 31 the certification must be on file.
    out = run(engine, [plan_only(), tx("V-30", 30), tx("V-31", 31)])
    assert flagged(out, CERT) == ["V-31"]
    body = alert(out[2], CERT)
    assert body["observed"]["days_after_first_day"] == 31
    assert body["expected"]["certified_within_days"] == 30
    assert body["severity"] == "error"


def test_certification_signed_on_day_30_is_on_file_for_day_31(engine: Engine) -> None:
    cert = doc("certification", author="MD")
    out = run(engine, [plan_only(), tx("V-30", 30, docs=[cert]), tx("V-31", 31)])
    assert flagged(out, CERT) == []


def test_late_signed_certification_covers_visits_from_its_signature(engine: Engine) -> None:
    # sec. 220.1.3 D: a delayed certification "should be accepted": on file from its signature.
    cert = doc("certification", author="MD")  # signed on V-40's date
    out = run(engine, [plan_only(), tx("V-35", 35), tx("V-40", 40, docs=[cert]), tx("V-45", 45)])
    assert flagged(out, CERT) == ["V-35"]


def test_verbal_order_signed_on_day_14_after_it_counts_on_day_15(engine: Engine) -> None:
    # sec. 220.1.3 B: a verbal order "must be followed within 14 days by a signature".
    order = doc("certification", author="MD", signed=None, verbal=day(D0, 20))
    signed = doc("certification", author="MD", signed=day(D0, 34), verbal=day(D0, 20))
    visits = [
        plan_only(),
        tx("V-20", 20, docs=[order]),
        tx("V-34", 34, docs=[signed]),
        tx("V-35", 35),
    ]
    assert flagged(run(engine, visits), CERT) == []


def test_verbal_order_signed_on_day_15_after_it_does_not_count_after_day_14(engine: Engine) -> None:
    order = doc("certification", author="MD", signed=None, verbal=day(D0, 20))
    signed = doc("certification", author="MD", signed=day(D0, 35), verbal=day(D0, 20))
    visits = [
        plan_only(),
        tx("V-20", 20, docs=[order]),
        tx("V-34", 34),  # day 14 after the order: it still counts
        tx("V-35", 35, docs=[signed]),  # signed 15 days after: too late (EVENTS.md)
        tx("V-36", 36),
    ]
    assert flagged(run(engine, visits), CERT) == ["V-35", "V-36"]


def test_unsigned_verbal_order_counts_for_14_days_only(engine: Engine) -> None:
    order = doc("certification", author="MD", signed=None, verbal=day(D0, 25))
    visits = [plan_only(), tx("V-25", 25, docs=[order]), tx("V-39", 39), tx("V-40", 40)]
    out = run(engine, visits)
    assert flagged(out, CERT) == ["V-40"]
    assert alert(out[3], CERT)["observed"]["unsigned_verbal_orders"] == [day(D0, 25)]


def test_delay_reason_on_a_signed_certification_suppresses(engine: Engine) -> None:
    # sec. 220.1.3 D: delayed certification is "deemed satisfied where, at any later date, a
    # physician/NPP makes a certification accompanied by a reason for the delay".
    late = doc("certification", author="MD", signed=day(D0, 40), verbal=day(D0, 20))
    with_reason = {**late, "delay_reason_documented": True}
    without = [plan_only(), tx("V-40", 40, docs=[late]), tx("V-45", 45)]
    assert flagged(run(engine, without), CERT) == ["V-40", "V-45"]
    with_it = [plan_only(), tx("V-40", 40, docs=[with_reason]), tx("V-45", 45)]
    assert flagged(run(engine, with_it), CERT) == []


def referral_episode(start: date, sent_day: int) -> list[dict[str, Any]]:
    referral = doc("referral", author="MD", discipline="PT")
    plan = doc("plan_of_care", sent=day(start, sent_day))
    return [
        ev([referral, plan], start=start),
        tx("V-40", 40, start=start),
    ]


def test_cy2025_referral_exception_applies_from_2025_01_01(engine: Engine) -> None:
    # CY 2025 PFS (89 FR 97912-97918): for dates of service from 2025-01-01, a signed order or
    # referral on file and the plan sent within 30 days of the evaluation meet the initial
    # certification. Day 40 before and after the effective date:
    before = referral_episode(date(2024, 11, 1), sent_day=3)  # day 40 = 2024-12-11
    after = referral_episode(date(2024, 12, 1), sent_day=3)  # day 40 = 2025-01-10
    assert flagged(run(engine, before), CERT) == ["V-40"]
    assert flagged(run(engine, after), CERT) == []


def test_cy2025_referral_exception_needs_the_plan_sent_within_30_days(engine: Engine) -> None:
    on_time = referral_episode(date(2025, 3, 3), sent_day=30)
    late = referral_episode(date(2025, 3, 3), sent_day=31)
    assert flagged(run(engine, on_time), CERT) == []
    assert flagged(run(engine, late), CERT) == ["V-40"]
    no_referral = [ev([doc("plan_of_care", sent=day(date(2025, 3, 3), 3))], start=date(2025, 3, 3))]
    no_referral.append(tx("V-40", 40, start=date(2025, 3, 3)))
    assert flagged(run(engine, no_referral), CERT) == ["V-40"]
    wrong_discipline = referral_episode(date(2025, 3, 3), sent_day=3)
    wrong_discipline[0]["documents"][0]["discipline"] = "OT"
    # A referral names its discipline (EVENTS.md): an OT referral does not order PT.
    assert flagged(run(engine, wrong_discipline), CERT) == ["V-40"]


def test_certification_only_for_payers_following_medicare(engine: Engine) -> None:
    out = run(
        engine, [ev([doc("plan_of_care")], kind="commercial"), tx("V-40", 40, kind="commercial")]
    )
    assert flagged(out, CERT) == []


# --- recertification (sec. 220.1.3 C) -------------------------------------------------------


def cert(**kw: Any) -> dict[str, Any]:
    return doc("certification", author="MD", **kw)


def test_recertification_due_after_covers_through(engine: Engine) -> None:
    c = cert(covers_from=D0.isoformat(), covers_through=day(D0, 60))
    out = run(engine, [ev([doc("plan_of_care"), c]), tx("V-60", 60), tx("V-61", 61)])
    assert flagged(out, RECERT) == ["V-61"]
    body = alert(out[2], RECERT)
    assert body["expected"]["certified_through"] == day(D0, 60)
    assert body["observed"]["days_after_certified_through"] == 1


def test_recertification_due_after_the_plans_end_when_no_covers_through(engine: Engine) -> None:
    plan = doc("plan_of_care", plan_start=D0.isoformat(), plan_end=day(D0, 45))
    out = run(engine, [ev([plan, cert()]), tx("V-45", 45), tx("V-46", 46)])
    assert flagged(out, RECERT) == ["V-46"]


def test_recertification_at_least_every_90_days(engine: Engine) -> None:
    # The interval "consists of 90 calendar days or less" (sec. 220.1.3; EVENTS.md: never past
    # the interval's start + 89 days), even when the certification names a longer one: from
    # day 0 the 90th calendar day is day 89 (counted by hand: days 0..89 are 90 dates), so day
    # 90 is the first after it.
    assert len([day(D0, n) for n in range(0, 90)]) == 90
    long = cert(covers_from=D0.isoformat(), covers_through=day(D0, 200))
    for certification in (cert(), long):
        out = run(
            engine, [ev([doc("plan_of_care"), certification]), tx("V-89", 89), tx("V-90", 90)]
        )
        assert flagged(out, RECERT) == ["V-90"]


def test_recertification_on_file_covers_the_next_interval(engine: Engine) -> None:
    first = cert(covers_from=D0.isoformat(), covers_through=day(D0, 60))
    recert = cert(covers_from=day(D0, 61), covers_through=day(D0, 150))
    visits = [
        ev([doc("plan_of_care"), first]),
        tx("V-59", 59, docs=[recert]),
        tx("V-61", 61),
        tx("V-140", 140),
    ]
    out = run(engine, visits)
    assert flagged(out, RECERT) == []
    # The recertification names days 61..150 (90 calendar days, its start included): day 150
    # is covered, day 151 is after it.
    out = run(engine, [*visits, tx("V-150", 150), tx("V-151", 151)])
    assert flagged(out, RECERT) == ["V-151"]


def test_referral_exception_does_not_cover_recertification(engine: Engine) -> None:
    # CY 2025 PFS: the exception is for the initial certification only. Its interval is the
    # plan's duration (here 60 days); treatment after it needs a recertification.
    start = date(2025, 3, 3)
    referral = doc("referral", author="MD", discipline="PT")
    plan = doc(
        "plan_of_care", sent=day(start, 2), plan_start=start.isoformat(), plan_end=day(start, 60)
    )
    out = run(
        engine,
        [
            ev([referral, plan], start=start),
            tx("V-60", 60, start=start),
            tx("V-61", 61, start=start),
        ],
    )
    assert flagged(out, CERT) == []
    assert flagged(out, RECERT) == ["V-61"]
