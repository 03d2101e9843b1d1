"""ComplianceNotice v1 (EVENTS.md "ComplianceNotice v1"): the boundary days of each kind, each case
next to its source. Day numbers are calendar days after the episode's first day (+ 0), every
boundary inclusive; expected dates are computed here from the contract (first day + 30, order
date + 14, interval end - 14, ...), never read from the code under test.

Sources: CMS Pub. 100-02, Ch. 15, sec. 220.3 D (progress report at least once every 10
treatment days), sec. 220.1.3 B (initial certification within 30 days; a verbal order
"followed within 14 days by a signature"), sec. 220.1.3 C (recertification at least every 90
days), sec. 220.1.3 D (delayed certification); CY 2025 PFS final rule, 89 FR 97912 (order or
referral exception); CMS Pub. 100-04, Ch. 5, sec. 10.3 (KX threshold, per year and bucket).

A `Feed` runs one patient as the worker does: visits through `Engine.evaluate` (seq = arrival
order) and daily runs through `Engine.notices_due`; what it collects is what was published."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from compliance import Engine, PatientHistory
from compliance.notices import due_on
from compliance.records import VisitRecord
from schemas.export import OUT_DIR
from schemas.notice import ComplianceNotice, NoticeKind
from tests.factories import doc, episode_visit, model

NOW = datetime(2026, 12, 31, 7, 0, tzinfo=UTC)
D0 = date(2026, 3, 2)
PATIENT = "P-88f1"  # tests.factories.BASE

PR = NoticeKind.PROGRESS_REPORT_DUE
CERT = NoticeKind.CERTIFICATION_DUE
VERBAL = NoticeKind.VERBAL_ORDER_SIGNATURE_DUE
RECERT = NoticeKind.RECERTIFICATION_DUE
KX = NoticeKind.KX_THRESHOLD_NEAR


def d(n: int, start: date = D0) -> date:
    return start + timedelta(days=n)


def iso(n: int, start: date = D0) -> str:
    return d(n, start).isoformat()


class Feed:
    """One patient's visits and daily runs, in the order given; `published` is every notice
    the engine returned (what the worker would publish)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.history = PatientHistory()
        self.seq = 0
        self.published: list[ComplianceNotice] = []

    def visit(self, data: dict[str, Any]) -> list[ComplianceNotice]:
        self.seq += 1
        out = self.engine.evaluate(model(data), NOW, self.history, self.seq)
        assert out.history is not None
        self.history = out.history
        self.published.extend(out.notices)
        return out.notices

    def daily(self, start: date, end: date | None = None) -> list[ComplianceNotice]:
        found, self.history = self.engine.notices_due(
            self.history, PATIENT, start, end or start, NOW
        )
        self.published.extend(found)
        return found

    def forget(self) -> None:
        """Forget what was published (to see what is due, with its id, on a later date)."""
        self.history = replace(self.history, sent=())

    def records(self) -> list[VisitRecord]:
        return [vs[-1] for vs in self.history.visits]


def of(kind: NoticeKind, notices: list[ComplianceNotice]) -> list[ComplianceNotice]:
    return [n for n in notices if n.kind is kind]


def one(kind: NoticeKind, notices: list[ComplianceNotice]) -> ComplianceNotice:
    found = of(kind, notices)
    assert len(found) == 1, notices
    return found[0]


def evaluation(docs: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    start = kw.pop("start", D0)
    return episode_visit("V-EVAL", start.isoformat(), evaluation=True, docs=docs or [], **kw)


def treatment(n: int, docs: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    start = kw.pop("start", D0)
    return episode_visit(f"V-{n}", iso(n, start), docs=docs or [], **kw)


PLAN = doc("plan_of_care")
CERTIFIED = doc("certification", author="MD")  # signed on its visit's date


# --- PROGRESS_REPORT_DUE (Pub. 100-02, Ch. 15, sec. 220.3 D) -----------------------------------
# Visits on consecutive dates: treatment day k (the evaluation is day 1) is the date D0 + k - 1.


def pr_feed(engine: Engine, last_day: int, **kw: Any) -> tuple[Feed, list[list[ComplianceNotice]]]:
    """Evaluation (treatment day 1) then treatment visits through treatment day `last_day`;
    the PROGRESS_REPORT_DUE notices of each visit (index 0 = treatment day 1)."""
    f = Feed(engine)
    out = [of(PR, f.visit(evaluation([PLAN, CERTIFIED], **kw)))]
    for k in range(2, last_day + 1):
        out.append(of(PR, f.visit(treatment(k - 1, **kw))))
    return f, out


def test_sec_220_3_d_progress_report_due_from_treatment_day_8(engine: Engine) -> None:
    _, out = pr_feed(engine, 8)
    assert out[:7] == [[]] * 7  # treatment days 1-7: none
    [n] = out[7]  # treatment day 8: one
    assert n.due_at_treatment_day == 10 and n.due_by is None
    assert n.observed["period_start"] == D0.isoformat()  # the period's first day
    assert n.episode_start == D0 and n.as_of == d(7)
    assert n.discipline == "PT" and n.payer_id == "P-MEDICARE" and n.episode_ref is None


def test_sec_220_3_d_progress_report_not_repeated_on_days_9_and_10(engine: Engine) -> None:
    _, out = pr_feed(engine, 10)
    first = out[7][0]
    assert out[8] == [] and out[9] == []  # published once
    # Still due on day 9 (the same obligation, the same id) for a history that forgot it.
    f2, _ = pr_feed(engine, 8)
    f2.forget()
    [again] = of(PR, f2.visit(treatment(8)))
    assert again.notice_id == first.notice_id
    assert again.observed["period_start"] == D0.isoformat()


def test_sec_220_3_d_clinician_report_restarts_the_period(engine: Engine) -> None:
    # A PT's progress report on treatment day 9 (date D0 + 8): the next period starts the day
    # after it (EVENTS.md PROGRESS_REPORT_OVERDUE); its treatment day 8 is the 8th visit after.
    f = Feed(engine)
    f.visit(evaluation([PLAN, CERTIFIED]))
    ids = []
    for n in range(1, 8):
        ids += [x.notice_id for x in of(PR, f.visit(treatment(n)))]
    assert len(ids) == 1  # treatment day 8 of the first period
    assert of(PR, f.visit(treatment(8, [doc("progress_report")]))) == []
    later = []
    for n in range(9, 17):  # dates D0+9 .. D0+16: treatment days 1..8 of the new period
        later.append(of(PR, f.visit(treatment(n))))
    assert later[:7] == [[]] * 7
    [n8] = later[7]
    assert n8.observed["period_start"] == d(9).isoformat()  # report date + 1
    assert n8.notice_id not in ids  # a new period: a new obligation


def test_sec_220_3_d_report_dated_on_the_visit_meets_it(engine: Engine) -> None:
    # A report dated on treatment day 8 covers that visit: no notice.
    f, _ = pr_feed(engine, 7)
    assert of(PR, f.visit(treatment(7, [doc("progress_report")]))) == []


def test_sec_220_3_d_assistant_report_does_not_meet_it(engine: Engine) -> None:
    # "Reports written by assistants are not complete progress reports" (sec. 220.3 D).
    f, _ = pr_feed(engine, 6)
    f.visit(treatment(6, [doc("progress_report", author="PTA")]))  # treatment day 7
    [n] = of(PR, f.visit(treatment(7)))
    assert n.observed["period_start"] == D0.isoformat()


def test_sec_220_3_d_discharge_visit_gets_none(engine: Engine) -> None:
    # EVENTS.md: an episode closed by a discharge_summary gets no further PROGRESS_REPORT_DUE.
    # The summary is an assistant's, so it does not also count as a clinician report.
    f, _ = pr_feed(engine, 7)
    assert of(PR, f.visit(treatment(7, [doc("discharge_summary", author="PTA")]))) == []


def test_sec_220_3_d_no_progress_report_notice_after_a_discharge_of_a_named_episode(
    engine: Engine,
) -> None:
    # EVENTS.md: "An episode closed by a discharge_summary gets no further PROGRESS_REPORT_DUE":
    # an EHR-named episode's visits after its discharge (an assistant's summary on treatment day
    # 3, so the period does not restart) get none; without the discharge, day 8 gets one.
    for discharge, expected in ((True, 0), (False, 1)):
        f = Feed(engine)
        f.visit(evaluation([PLAN, CERTIFIED], episode_ref="EP-1"))
        got = []
        for n in range(1, 10):
            docs = [doc("discharge_summary", author="PTA")] if discharge and n == 2 else []
            got += of(PR, f.visit(treatment(n, docs, episode_ref="EP-1")))
        assert len(got) == expected, discharge


def test_progress_report_due_counts_treatment_days_not_calendar_days(engine: Engine) -> None:
    # Treatment days are distinct dates of service with a service (EVENTS.md).
    f = Feed(engine)
    f.visit(evaluation([PLAN, CERTIFIED]))
    got = [of(PR, f.visit(treatment(3 * k))) for k in range(1, 8)]  # treatment days 2..8
    assert got[:6] == [[]] * 6 and len(got[6]) == 1


def test_a_late_visit_is_judged_as_of_its_date_with_the_visits_dated_before_it(
    engine: Engine,
) -> None:
    # Sec. 220.3 D; EVENTS.md: one judgement for every source (a date reads the records dated
    # on or before it), so the stream and `audit --as-of` agree. The visit of treatment day 8
    # arrives after the one of day 9 that carries the report: as of its date no report was
    # written, so it carries the notice (what it would have carried on time).
    f = Feed(engine)
    f.visit(evaluation([PLAN, CERTIFIED]))
    for k in range(2, 8):
        f.visit(treatment(k - 1))
    f.visit(treatment(9, [doc("progress_report")]))  # no notice: a report on its own date
    [n] = of(PR, f.visit(treatment(7)))  # treatment day 8, arriving late
    assert n.as_of == d(7) and n.observed["period_start"] == D0.isoformat()


# --- CERTIFICATION_DUE (sec. 220.1.3 B, D; CY 2025 PFS referral exception, 89 FR 97912) --------


def cert_feed(engine: Engine, docs: list[dict[str, Any]] | None = None, **kw: Any) -> Feed:
    f = Feed(engine)
    f.visit(evaluation(docs if docs is not None else [PLAN], **kw))
    return f


def test_sec_220_1_3_b_certification_due_on_first_day_plus_21_through_30(engine: Engine) -> None:
    f = cert_feed(engine)
    assert of(CERT, f.daily(d(20))) == []  # first day + 20: none
    n = one(CERT, f.daily(d(21)))  # + 21: one
    assert n.due_by == d(30)  # first day + 30
    assert n.as_of == d(21) and n.episode_start == D0 and n.due_at_treatment_day is None
    assert n.observed["days_since_start"] == 21
    assert of(CERT, f.daily(d(22), d(30))) == []  # not repeated
    f.forget()
    assert one(CERT, f.daily(d(30))).notice_id == n.notice_id  # + 30: still due, same id
    f.forget()
    assert of(CERT, f.daily(d(31))) == []  # + 31: none (the alert's day)


def test_sec_220_1_3_b_certification_due_at_visits_on_the_boundary_days(engine: Engine) -> None:
    for n, expected in ((20, 0), (21, 1), (30, 1), (31, 0)):
        f = cert_feed(engine)
        got = of(CERT, f.visit(treatment(n, [doc("progress_report")])))
        assert len(got) == expected, n
        if got:
            assert got[0].due_by == d(30) and got[0].as_of == d(n)


def test_a_late_visit_in_the_window_is_judged_as_of_its_date(engine: Engine) -> None:
    # Sec. 220.1.3 B: the certification signed on day 28 reached the service before the visit
    # of day 22: as of day 22 none was on file, so CERTIFICATION_DUE as of day 22.
    f = cert_feed(engine)
    f.visit(treatment(28, [CERTIFIED]))
    n = one(CERT, f.visit(treatment(22)))
    assert n.as_of == d(22) and n.due_by == d(30)


def test_sec_220_1_3_b_none_once_a_signed_certification_is_on_file(engine: Engine) -> None:
    f = cert_feed(engine)
    f.visit(treatment(5, [CERTIFIED]))
    assert of(CERT, f.daily(d(0), d(40))) == []
    # Signed on day 25: due on 21-24 only, then met and not repeated.
    f = cert_feed(engine)
    assert len(of(CERT, f.daily(d(21), d(24)))) == 1
    f.visit(treatment(25, [CERTIFIED]))
    f.forget()
    assert of(CERT, f.daily(d(25), d(30))) == []


def test_sec_220_1_3_b_unsigned_verbal_order_is_not_a_signed_certification(engine: Engine) -> None:
    # The contract's condition is a *signed* certification: a verbal order pending signature
    # does not stop the notice.
    f = cert_feed(engine)
    f.visit(treatment(15, [doc("certification", author="MD", signed=None, verbal=iso(15))]))
    assert one(CERT, f.daily(d(21))).due_by == d(30)


def test_sec_220_1_3_b_a_signature_dated_later_is_not_signed_yet(engine: Engine) -> None:
    # A verbal order of day 20 whose signature is dated day 40 (after its 14 days) reported on
    # the day-20 visit: on days 21-30 it is not signed, so the certification is due; on day 41
    # it is not on file (signed late) and CERTIFICATION_MISSING is raised - the notice must
    # have preceded it.
    f = cert_feed(engine)
    late = doc("certification", author="MD", verbal=iso(20), signed=iso(40))
    f.visit(treatment(20, [late]))
    n = one(CERT, f.daily(d(21), d(30)))
    assert n.due_by == d(30) and n.as_of == d(21)
    f.seq += 1
    alerts = engine.evaluate(model(treatment(41)), NOW, f.history, f.seq).alerts
    assert "CERTIFICATION_MISSING" in [a.rule_id for a in alerts]


def test_sec_220_1_3_d_none_with_delay_reason_documented(engine: Engine) -> None:
    # A verbal order of day 1 signed on day 20 (after its 14 days): not timely, so not on file;
    # with the delay reason documented it is a delayed certification (sec. 220.1.3 D): no notice.
    late = {"verbal": iso(1), "signed": iso(20)}
    f = cert_feed(engine)
    f.visit(treatment(20, [doc("certification", author="MD", **late)]))
    assert len(of(CERT, f.daily(d(21), d(30)))) == 1
    f = cert_feed(engine)
    delayed = doc("certification", author="MD", delay_reason_documented=True, **late)
    f.visit(treatment(20, [delayed]))
    assert of(CERT, f.daily(d(21), d(30))) == []


def referral_docs(sent: int, discipline: str = "PT", start: date = D0) -> list[dict[str, Any]]:
    referral = doc("referral", author="MD", discipline=discipline)
    return [referral, doc("plan_of_care", sent=iso(sent, start))]


def test_cy2025_pfs_referral_exception_no_certification_due(engine: Engine) -> None:
    # 89 FR 97912: from 2025-01-01, a signed referral for the discipline and the plan sent to
    # the certifier within 30 days meet the initial certification.
    f = cert_feed(engine, referral_docs(3))
    assert of(CERT, f.daily(d(0), d(40))) == []
    # A referral naming another discipline does not.
    f = cert_feed(engine, referral_docs(3, discipline="OT"))
    assert one(CERT, f.daily(d(0), d(40))).due_by == d(30)


def test_cy2025_pfs_referral_exception_not_before_2025(engine: Engine) -> None:
    start = date(2024, 6, 3)  # + 30 = 2024-07-03: the exception is not in effect
    f = cert_feed(engine, referral_docs(3, start=start), start=start)
    n = one(CERT, f.daily(d(0, start), d(40, start)))
    assert n.due_by == d(30, start) and n.as_of == d(21, start)


def test_certification_due_catch_up_reads_only_records_dated_up_to_each_date(
    engine: Engine,
) -> None:
    # A certification signed on day 25 is known before the daily runs of days 21-24 are caught
    # up: those dates were still uncertified, so the notice is due as of day 21 - what a worker
    # running each morning published then (EVENTS.md: `audit --as-of` = one daily run for each
    # date after that date's visits; the stream that catches up gives the same ids).
    f = cert_feed(engine)
    f.visit(treatment(25, [CERTIFIED]))
    n = one(CERT, f.daily(d(0), d(40)))
    assert n.as_of == d(21) and n.due_by == d(30)
    records = f.records()
    for n_day in range(0, 41):
        day = d(n_day)
        upto = [r for r in records if r.date_of_service <= day]
        assert due_on(records, day, engine.rules) == due_on(upto, day, engine.rules), day


# --- VERBAL_ORDER_SIGNATURE_DUE (sec. 220.1.3 B) ------------------------------------------------

V = 10  # the verbal order's day


def verbal_feed(engine: Engine) -> Feed:
    f = cert_feed(engine)
    f.visit(treatment(V, [doc("certification", author="MD", signed=None, verbal=iso(V))]))
    return f


def test_sec_220_1_3_b_verbal_order_signature_due_through_order_date_plus_14(
    engine: Engine,
) -> None:
    f = Feed(engine)
    f.visit(evaluation([PLAN]))
    order = doc("certification", author="MD", signed=None, verbal=iso(V))
    n = one(VERBAL, f.visit(treatment(V, [order])))  # on V: due
    assert n.due_by == d(V + 14) and n.as_of == d(V)
    assert n.observed["verbal_order_date"] == d(V).isoformat()
    assert of(VERBAL, f.daily(d(V), d(V + 14))) == []  # not repeated
    f.forget()
    assert one(VERBAL, f.daily(d(V + 14))).notice_id == n.notice_id  # V + 14: same id
    f.forget()
    assert of(VERBAL, f.daily(d(V + 15))) == []  # V + 15: none
    f.forget()
    assert of(VERBAL, f.daily(d(V - 1))) == []  # before the order: none


def test_sec_220_1_3_b_no_verbal_order_notice_after_the_signature(engine: Engine) -> None:
    f = verbal_feed(engine)
    signed = doc("certification", author="MD", signed=iso(V + 5), verbal=iso(V))
    f.visit(treatment(V + 5, [signed]))
    f.forget()
    assert of(VERBAL, f.daily(d(V + 5), d(V + 14))) == []
    assert len(of(VERBAL, f.daily(d(V), d(V + 4)))) == 1  # the dates before it were due


# --- RECERTIFICATION_DUE (sec. 220.1.3 C) -------------------------------------------------------

E = 59  # the certified interval's last day: covers_from D0, covers_through D0 + 59


def recert_feed(engine: Engine, last: int = E) -> Feed:
    f = Feed(engine)
    cert = doc("certification", author="MD", covers_from=iso(0), covers_through=iso(last))
    f.visit(evaluation([PLAN, cert]))
    return f


def test_sec_220_1_3_c_recertification_due_from_end_minus_14_through_end(engine: Engine) -> None:
    f = recert_feed(engine)
    assert of(RECERT, f.daily(d(E - 15))) == []  # E - 15: none
    n = one(RECERT, f.daily(d(E - 14)))  # E - 14: one
    assert n.due_by == d(E) and n.as_of == d(E - 14) and n.episode_start == D0
    assert of(RECERT, f.daily(d(E - 13), d(E))) == []  # not repeated
    f.forget()
    assert one(RECERT, f.daily(d(E))).notice_id == n.notice_id  # E: same id
    f.forget()
    assert of(RECERT, f.daily(d(E + 1))) == []  # E + 1: none (the alert's side)


def test_sec_220_1_3_c_interval_from_the_plan_capped_at_start_plus_89(engine: Engine) -> None:
    # plan_start .. plan_end of 120 days: the interval ends at plan_start + 89 (90 days).
    f = Feed(engine)
    plan = doc("plan_of_care", plan_start=iso(0), plan_end=iso(120))
    f.visit(evaluation([plan, CERTIFIED]))
    n = one(RECERT, f.daily(d(0), d(130)))
    assert n.due_by == d(89) and n.as_of == d(89 - 14)


def test_sec_220_1_3_c_recertification_at_a_visit(engine: Engine) -> None:
    f = recert_feed(engine)
    assert of(RECERT, f.visit(treatment(E - 15, [doc("progress_report")]))) == []
    n = one(RECERT, f.visit(treatment(E - 14, [doc("progress_report")])))
    assert n.due_by == d(E)


def test_sec_220_1_3_c_none_once_a_recertification_covering_the_next_day_is_on_file(
    engine: Engine,
) -> None:
    recert = doc("certification", author="MD", covers_from=iso(E + 1), covers_through=iso(E + 60))
    # On file before the window: never due.
    f = recert_feed(engine)
    f.visit(treatment(E - 20, [recert, doc("progress_report")]))
    assert of(RECERT, f.daily(d(0), d(E + 1))) == []
    # Signed inside the window: due before it, not after it.
    f = recert_feed(engine)
    assert len(of(RECERT, f.daily(d(0), d(E - 6)))) == 1
    f.visit(treatment(E - 5, [recert, doc("progress_report")]))
    f.forget()
    assert of(RECERT, f.daily(d(E - 5), d(E))) == []


def test_sec_220_1_3_c_a_verbal_recertification_lapsing_before_the_next_day_does_not_cover_it(
    engine: Engine,
) -> None:
    # A verbal recertification order of E - 14 covering E + 1 .. E + 60, never signed: on file
    # through E (its 14 days), not on E + 1, where RECERTIFICATION_MISSING is raised. The
    # notice is due from E - 14 (sec. 220.1.3 B-C), next to the verbal order's own notice.
    f = recert_feed(engine)
    order = doc(
        "certification",
        author="MD",
        signed=None,
        verbal=iso(E - 14),
        covers_from=iso(E + 1),
        covers_through=iso(E + 60),
    )
    got = f.visit(treatment(E - 14, [order, doc("progress_report")]))
    assert one(RECERT, got).due_by == d(E)
    assert one(VERBAL, got).due_by == d(E)
    f.seq += 1
    alerts = engine.evaluate(
        model(treatment(E + 1, [doc("progress_report")])), NOW, f.history, f.seq
    )
    assert "RECERTIFICATION_MISSING" in [a.rule_id for a in alerts.alerts]
    # Signed in time, it covers E + 1: no notice.
    f = recert_feed(engine)
    signed = {**order, "signed_at": f"{iso(E - 10)}T18:00:00Z"}
    assert of(RECERT, f.visit(treatment(E - 14, [signed, doc("progress_report")]))) == []


def test_sec_220_1_3_c_none_after_a_discharge(engine: Engine) -> None:
    f = recert_feed(engine)
    f.visit(treatment(E - 20, [doc("discharge_summary")]))
    assert of(RECERT, f.daily(d(E - 20), d(E + 1))) == []


# --- after a discharge (EVENTS.md) --------------------------------------------------------------


def test_after_a_discharge_only_certification_and_verbal_order_notices(engine: Engine) -> None:
    # Day 20: a verbal order (on file for 14 days) certifying the plan D0..D0+29, and, in one
    # history, a discharge. Without it, RECERTIFICATION_DUE comes at + 15 (its end - 14).
    def feed(discharge: bool) -> set[NoticeKind]:
        f = Feed(engine)
        f.visit(evaluation([doc("plan_of_care", plan_start=iso(0), plan_end=iso(29))]))
        docs = [doc("certification", author="MD", signed=None, verbal=iso(20))]
        if discharge:
            docs.append(doc("discharge_summary"))
        for n in range(1, 20):  # a report on D0 + 12: D0 + 20 is treatment day 8 after it
            f.visit(treatment(n, [doc("progress_report")] if n == 12 else []))
        f.visit(treatment(20, docs))
        f.daily(d(20), d(60))
        return {n.kind for n in f.published if n.as_of >= d(20)}

    assert feed(discharge=False) == {PR, CERT, VERBAL, RECERT}
    assert feed(discharge=True) == {CERT, VERBAL}


# --- KX_THRESHOLD_NEAR (Pub. 100-04, Ch. 5, sec. 10.3; kx_thresholds.toml) ----------------------
# 2026: $2,480.00 for PT and SLP combined and $2,480.00 for OT; 90% = $2,232.00. 2025: $2,410.00.


def kx_visit(n: int, amount: str, discipline: str = "PT", **kw: Any) -> dict[str, Any]:
    docs = [doc("plan_of_care"), doc("certification", author="MD"), doc("progress_report")]
    start = kw.pop("start", D0)
    return episode_visit(
        f"V-{discipline}-{n}",
        iso(n, start),
        discipline=discipline,
        amount=amount,
        docs=docs,
        **kw,
    )


@pytest.mark.parametrize(
    ("amounts", "notice"),
    [
        (("2000.00", "229.52"), False),  # 2,229.52 = 89.9%: none
        (("2000.00", "232.00"), True),  # 2,232.00 = 90%: one
        (("2000.00", "480.00"), True),  # 2,480.00 = 100%: due (not above)
        (("2000.00", "480.01"), False),  # above: none (KX_MODIFIER_MISSING's side)
    ],
)
def test_sec_10_3_kx_threshold_near_boundaries(
    engine: Engine, amounts: tuple[str, str], notice: bool
) -> None:
    f = Feed(engine)
    assert of(KX, f.visit(kx_visit(0, amounts[0]))) == []  # 2,000.00 = 80.6%
    got = of(KX, f.visit(kx_visit(2, amounts[1])))
    assert len(got) == int(notice)
    if notice:
        [n] = got
        accrued = sum(float(a) for a in amounts)
        assert float(n.observed["accrued"]) == pytest.approx(accrued)
        assert n.observed["threshold"] == "2480.00"
        assert n.observed["bucket"] == "PT_SLP" and n.observed["year"] == 2026
        assert n.due_by is None and n.episode_start is None and n.as_of == d(2)


def test_sec_10_3_kx_observed_amounts_are_decimal_strings(engine: Engine) -> None:
    # As in the alerts' `observed` (KX_MODIFIER_MISSING: "2500.00"): decimal strings, USD.
    f = Feed(engine)
    n = one(KX, f.visit(kx_visit(0, "2300.00")))
    assert n.observed["accrued"] == "2300.00" and n.observed["threshold"] == "2480.00"


def test_sec_10_3_kx_notice_once_per_bucket_and_year(engine: Engine) -> None:
    f = Feed(engine)
    first = one(KX, f.visit(kx_visit(0, "2250.00")))
    assert of(KX, f.visit(kx_visit(2, "10.00"))) == []  # same bucket and year: not repeated
    f.forget()
    assert one(KX, f.visit(kx_visit(4, "10.00"))).notice_id == first.notice_id
    # SLP shares the PT bucket: the same obligation.
    f.forget()
    assert one(KX, f.visit(kx_visit(6, "10.00", discipline="SLP"))).notice_id == first.notice_id


def test_sec_10_3_kx_ot_is_its_own_bucket(engine: Engine) -> None:
    f = Feed(engine)
    pt = one(KX, f.visit(kx_visit(0, "2300.00")))
    assert of(KX, f.visit(kx_visit(1, "100.00", discipline="OT"))) == []  # OT at 100.00
    ot = one(KX, f.visit(kx_visit(2, "2200.00", discipline="OT")))  # OT at 2,300.00
    assert ot.observed["bucket"] == "OT" and ot.notice_id != pt.notice_id


def test_sec_10_3_kx_a_new_year_is_a_new_notice(engine: Engine) -> None:
    start = date(2025, 12, 1)
    f = Feed(engine)
    y2025 = one(KX, f.visit(kx_visit(0, "2200.00", start=start)))  # 91.3% of 2,410.00
    assert y2025.observed["year"] == 2025 and y2025.observed["threshold"] == "2410.00"
    assert of(KX, f.visit(kx_visit(40, "1000.00", start=start))) == []  # 2026: 1,000.00
    y2026 = one(KX, f.visit(kx_visit(45, "1300.00", start=start)))  # 2,300.00
    assert y2026.observed["year"] == 2026 and y2026.notice_id != y2025.notice_id


def test_sec_10_3_kx_near_even_when_the_visit_bills_kx(engine: Engine) -> None:
    # The contract's condition is the accrual alone ("reached 90% ... and is not above it"):
    # a visit at 95% billing KX does not meet the obligation of the next visits, and the one
    # crossing the threshold without KX is KX_MODIFIER_MISSING - which the notice must precede.
    f = Feed(engine)
    got = of(KX, f.visit(kx_visit(0, "2360.00", kx=True)))
    assert len(got) == 1


# --- payers -------------------------------------------------------------------------------------


def test_non_medicare_payer_gets_no_notice_of_any_kind(engine: Engine) -> None:
    f = Feed(engine)
    f.visit(
        evaluation([doc("plan_of_care", plan_start=iso(0), plan_end=iso(29))], kind="commercial")
    )
    f.visit(
        treatment(
            5, [doc("certification", author="MD", signed=None, verbal=iso(5))], kind="commercial"
        )
    )
    for n in range(6, 20):
        f.visit(treatment(n, kind="commercial", amount="300.00"))
    f.daily(d(0), d(120))
    assert f.published == []


# --- identity and the wire format ---------------------------------------------------------------


def test_same_obligation_from_a_visit_and_from_a_daily_run_has_the_same_id(engine: Engine) -> None:
    by_run = cert_feed(engine)
    by_visit = cert_feed(engine)
    a = one(CERT, by_run.daily(d(21)))
    b = one(CERT, by_visit.visit(treatment(21, [doc("progress_report")])))
    assert a.notice_id == b.notice_id and a.due_by == b.due_by
    # And the visit's notice is not published again by that date's daily run.
    assert of(CERT, by_visit.daily(d(21))) == []


def test_notice_ids_differ_per_patient_and_kind(engine: Engine) -> None:
    f = cert_feed(engine)
    f.visit(treatment(10, [doc("certification", author="MD", signed=None, verbal=iso(20))]))
    found = f.daily(d(21))
    assert len({n.notice_id for n in found}) == len(found) == 2
    other, _ = engine.notices_due(f.history, "P-other", d(21), d(21), NOW)
    assert {n.notice_id for n in other}.isdisjoint(n.notice_id for n in found)


def _schema() -> dict[str, Any]:
    raw = (OUT_DIR / "compliance_notice.v1.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(raw)
    return schema


def _validate(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    """The JSON Schema keywords the notice schema uses (no validator library is installed)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return _validate(value, root["$defs"][name], root, path)
    if "anyOf" in schema:
        options = [_validate(value, s, root, path) for s in schema["anyOf"]]
        return [] if any(not o for o in options) else [f"{path}: no anyOf option: {options}"]
    errors: list[str] = []
    types = {
        "string": str,
        "integer": int,
        "object": dict,
        "null": type(None),
        "array": list,
        "boolean": bool,
    }
    t = schema.get("type")
    if t is not None:
        ok = isinstance(value, types[t]) and not (t == "integer" and isinstance(value, bool))
        if not ok:
            return [f"{path}: {value!r} is not {t}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            errors.append(f"{path}: length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: pattern")
        fmt = schema.get("format")
        if fmt == "date" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            errors.append(f"{path}: not a date")
        if fmt == "date-time":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                errors.append(f"{path}: not a date-time with offset")
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: {name} required")
        for name, item in value.items():
            if name in props:
                errors += _validate(item, props[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: {name} not allowed")
    return errors


def test_every_kind_validates_against_the_json_schema(engine: Engine) -> None:
    schema = _schema()
    f = Feed(engine)
    plan = doc("plan_of_care", plan_start=iso(0), plan_end=iso(29))
    f.visit(evaluation([plan], amount="2300.00"))
    f.visit(treatment(5, [doc("certification", author="MD", signed=None, verbal=iso(5))]))
    for k in range(6, 13):
        f.visit(treatment(k))
    f.daily(d(0), d(40))
    assert {n.kind for n in f.published} == set(NoticeKind)
    for n in f.published:
        body = orjson.loads(n.model_dump_json())
        assert _validate(body, schema, schema, "$") == [], body
        # The wire form reads back as the same notice.
        assert ComplianceNotice.model_validate_json(n.model_dump_json()) == n
    # And a wrong one does not validate (the validator is not vacuous).
    bad = orjson.loads(f.published[0].model_dump_json())
    bad["kind"] = "NOPE"
    bad["extra"] = 1
    assert len(_validate(bad, schema, schema, "$")) == 2
