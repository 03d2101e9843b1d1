"""ComplianceNotice v1 guarantees on random histories (EVENTS.md "ComplianceNotice v1": "what must
be done and by when so that no alert is raised later"; "`notice_id` is deterministic from that
identity"; "a notice whose obligation is met is not repeated").

Random day-by-day histories of one or two patients (episodes opened by an initial evaluation,
treatment visits, sometimes progress reports by a clinician or an assistant, plans with
plan_start/plan_end, certifications signed, verbal (signed later or never), with covers dates
or a delay reason, referrals, discharges and new episodes after them; Medicare Part B with
allowed amounts so that KX accrues, sometimes a commercial payer) are processed in date order
as the worker and `audit --notices-out` do: for each patient, a daily run
(`Engine.notices_due`) for every date since its last one, then that date's visits
(`Engine.evaluate`), then the daily run of that date. Then:
- every PROGRESS_REPORT_OVERDUE (treatment day > 10 of a period: its days 8-10 were earlier
  visits) was preceded by a PROGRESS_REPORT_DUE with the same period_start and episode;
- every CERTIFICATION_MISSING (day > 30; the episode known from its evaluation, so days 21-30
  were run) was preceded by a CERTIFICATION_DUE with due_by = first day + 30;
- every RECERTIFICATION_MISSING with certified_through E was preceded by a RECERTIFICATION_DUE
  with due_by E when, on some date X in [E-14, E], the records dated <= X already made a visit
  on E + 1 RECERTIFICATION_MISSING through E (a probe judged by `Engine.check`: the alert's
  own judgement, not the notice code);
- every KX_MODIFIER_MISSING was preceded by a KX_THRESHOLD_NEAR of its year and bucket when an
  earlier visit left the accrual (summed here from the allowed amounts) in [90%, 100%];
- each notice_id is published at most once per patient; a commercial patient gets none;
- `due_between(records, a, b)` equals the union of `due_on` over each date a..b computed by a
  plain loop (so `candidate_dates` is a cover), and `due_on` of a date reads only the records
  dated on or before it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from compliance import Engine, PatientHistory, notices
from compliance.notices import due_between, due_on
from compliance.records import VisitRecord
from compliance.state import history_of
from schemas.notice import ComplianceNotice, NoticeKind
from tests.factories import EVALUATION, MODIFIER, doc, line, model, payload

NOW = datetime(2026, 12, 31, tzinfo=UTC)
THRESHOLD = {2025: Decimal("2410.00"), 2026: Decimal("2480.00")}  # kx_thresholds.toml
BUCKET = {"PT": "PT_SLP", "SLP": "PT_SLP", "OT": "OT"}
TREATMENT = {"PT": "97110", "OT": "97530"}
ASSISTANT = {"PT": "PTA", "OT": "OTA"}
STARTS = (date(2026, 3, 2), date(2025, 11, 3))


@cache
def engine() -> Engine:
    return Engine()


@dataclass(frozen=True)
class Doc:
    kind: str
    author: str = "PT"
    signed: int | None = 0  # days after the visit; None: unsigned
    verbal: bool = False
    delay_reason: bool = False
    covers: int | None = None  # covers_from = the visit's date, covers_through = + covers
    plan: int | None = None  # plan_start = the visit's date, plan_end = + plan
    sent: bool = False


@dataclass(frozen=True)
class Visit:
    day: int
    discipline: str
    evaluation: bool
    amount: str
    docs: tuple[Doc, ...]
    kx: bool = False  # the line carries KX

    def payload(self, patient: str, start: date, visit_id: str, medicare: bool) -> dict[str, Any]:
        dos = start + timedelta(days=self.day)
        mods = [MODIFIER[self.discipline], *(["KX"] if self.kx else [])]
        if self.evaluation:
            services = [line("1", EVALUATION[self.discipline], 1, None, mods)]
        else:
            services = [line("1", TREATMENT[self.discipline], 1, 15, mods)]
        services[0]["allowed_amount"] = self.amount
        documents = []
        for i, d in enumerate(self.docs):
            fields: dict[str, Any] = {}
            if d.verbal:
                fields["verbal"] = dos.isoformat()
            if d.delay_reason:
                fields["delay_reason_documented"] = True
            if d.covers is not None:
                fields["covers_from"] = dos.isoformat()
                fields["covers_through"] = (dos + timedelta(days=d.covers)).isoformat()
            if d.plan is not None:
                fields["plan_start"] = dos.isoformat()
                fields["plan_end"] = (dos + timedelta(days=d.plan)).isoformat()
            if d.sent:
                fields["sent"] = dos.isoformat()
            if d.kind == "referral":
                fields["discipline"] = self.discipline
            signed = f"{dos + timedelta(days=d.signed)}T18:00:00Z" if d.signed is not None else None
            documents.append(
                doc(d.kind, f"D-{visit_id}-{i}", signed=signed, author=d.author, **fields)
            )
        timed = sum(s.get("minutes", 0) for s in services)
        return payload(
            patient_ref=patient,
            visit_id=visit_id,
            event_id=f"evt-{patient}-{visit_id}",
            date_of_service=dos.isoformat(),
            occurred_at=f"{dos}T20:00:00Z",
            discipline=self.discipline,
            payer=(
                {"payer_id": "MEDICARE-B", "kind": "medicare"}
                if medicare
                else {"payer_id": "ACME", "kind": "commercial"}
            ),
            rendering_provider={"npi": "1234567893", "credential": self.discipline},
            services=services,
            total_timed_minutes=timed,
            total_treatment_minutes=timed + 30,
            documents=documents,
        )


def docs_of(discipline: str) -> st.SearchStrategy[tuple[Doc, ...]]:
    clinician = discipline
    one = st.one_of(
        st.just(Doc("progress_report", clinician)),
        st.just(Doc("progress_report", ASSISTANT[discipline])),
        st.builds(Doc, st.just("plan_of_care"), st.just(clinician), plan=st.integers(20, 120)),
        st.just(Doc("plan_of_care", clinician, sent=True)),
        st.just(Doc("certification", "MD")),
        st.builds(Doc, st.just("certification"), st.just("MD"), covers=st.integers(20, 110)),
        st.just(Doc("certification", "MD", signed=None, verbal=True)),
        st.builds(Doc, st.just("certification"), st.just("MD"), st.integers(0, 30), st.just(True)),
        st.builds(
            Doc,
            st.just("certification"),
            st.just("MD"),
            st.one_of(st.none(), st.integers(0, 25)),
            st.just(True),
            covers=st.integers(20, 89),
        ),
        st.just(Doc("certification", "MD", delay_reason=True)),
        st.just(Doc("referral", "MD")),
        st.just(Doc("discharge_summary", clinician)),
    )
    return st.lists(one, min_size=1, max_size=2).map(tuple)


AMOUNTS = st.sampled_from(["60.00", "120.00", "180.00", "250.00", "400.00"])


@st.composite
def stream(draw: st.DrawFn, discipline: str) -> list[Visit]:
    """One discipline's visits: an evaluation, treatments every 1-4 days, sometimes a new
    evaluation after a discharge."""
    day = draw(st.integers(0, 5))
    visits: list[Visit] = []
    n = draw(st.integers(8, 45))
    # Documents on one visit in `rate` on average: some episodes are well documented, some
    # hardly (so that reports, certifications and recertifications fall due and are missed).
    rate = draw(st.sampled_from([3, 8, 20]))
    opened = False
    for _ in range(n):
        docs = draw(docs_of(discipline)) if draw(st.integers(1, rate)) == 1 else ()
        if not opened and draw(st.booleans()):
            # An episode certified from its evaluation for a short interval (it must be
            # recertified while the history goes on).
            docs += (Doc("certification", "MD", covers=draw(st.integers(20, 60))),)
        evaluation = not opened or (draw(st.integers(0, 30)) == 0)
        kx = draw(st.integers(0, 3)) == 0
        visits.append(Visit(day, discipline, evaluation, draw(AMOUNTS), docs, kx))
        opened = not any(d.kind == "discharge_summary" for d in docs)
        if not opened and draw(st.booleans()):
            opened = True  # the visit after a discharge opens the next episode itself
        day += draw(st.integers(1, 4))
    return visits


@dataclass(frozen=True)
class Patient:
    ref: str
    medicare: bool
    visits: tuple[Visit, ...]


@st.composite
def patients(draw: st.DrawFn) -> tuple[date, list[Patient]]:
    start = draw(st.sampled_from(STARTS))
    out = []
    for i in range(draw(st.integers(1, 2))):
        visits: list[Visit] = []
        for discipline in draw(st.sampled_from([("PT",), ("OT",), ("PT", "OT")])):
            visits += draw(stream(discipline))
        medicare = draw(st.sampled_from([True, True, True, False]))
        out.append(Patient(f"P-{i}", medicare, tuple(visits)))
    return start, out


@dataclass
class Run:
    history: PatientHistory
    seq: int = 0
    last_run: date | None = None


def daily(run: Run, patient: str, a: date, b: date, log: list[ComplianceNotice]) -> None:
    if a > b:
        return
    found, run.history = engine().notices_due(run.history, patient, a, b, NOW)
    log.extend(found)


@given(patients())
@settings(
    max_examples=int(os.environ.get("NOTICES_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_notices_precede_alerts_and_are_published_once(case: tuple[date, list[Patient]]) -> None:
    start, pats = case
    eng = engine()
    items = sorted(
        (start + timedelta(days=v.day), p.ref, i, v) for p in pats for i, v in enumerate(p.visits)
    )
    medicare = {p.ref: p.medicare for p in pats}
    runs = {p.ref: Run(PatientHistory()) for p in pats}
    notices: dict[str, list[ComplianceNotice]] = {p.ref: [] for p in pats}
    alerts: dict[str, list[dict[str, Any]]] = {p.ref: [] for p in pats}
    #: per patient: (date, year, bucket, accrued after the visit) of each visit, in order
    accruals: dict[str, list[tuple[date, int, str, Decimal]]] = {p.ref: [] for p in pats}
    totals: dict[tuple[str, int, str], Decimal] = {}
    for dos, ref, i, v in items:
        run = runs[ref]
        if run.last_run is not None:
            daily(run, ref, run.last_run + timedelta(days=1), dos - timedelta(days=1), notices[ref])
        run.seq += 1
        out = eng.evaluate(
            model(v.payload(ref, start, f"V-{i}", medicare[ref])), NOW, run.history, run.seq
        )
        assert out.history is not None
        run.history = out.history
        notices[ref].extend(out.notices)
        alerts[ref].extend(a.body for a in out.alerts)
        if medicare[ref]:
            key = (ref, dos.year, BUCKET[v.discipline])
            totals[key] = totals.get(key, Decimal(0)) + Decimal(v.amount)
            accruals[ref].append((dos, dos.year, BUCKET[v.discipline], totals[key]))
        daily(run, ref, dos, dos, notices[ref])
        run.last_run = dos
    for ref, run in runs.items():
        if run.last_run is not None:
            daily(
                run,
                ref,
                run.last_run + timedelta(days=1),
                run.last_run + timedelta(days=120),
                notices[ref],
            )

    for p in pats:
        ref = p.ref
        got = notices[ref]
        ids = [n.notice_id for n in got]
        assert len(ids) == len(set(ids)), "a notice id published twice"
        if not p.medicare:
            assert got == []
            continue
        for n in got:
            event(n.kind.value)
        for a in alerts[ref]:
            rule = a["rule_id"]
            alert_day = _date(a["date_of_service"])
            if rule == "PROGRESS_REPORT_OVERDUE":
                event("checked: PROGRESS_REPORT_OVERDUE")
                period = a["observed"]["period_start"]
                first = _date(a["observed"]["episode_first_day"])
                assert any(
                    n.kind is NoticeKind.PROGRESS_REPORT_DUE
                    and n.observed["period_start"] == period
                    and n.episode_start == first
                    and n.discipline == a["discipline"]
                    and n.as_of <= alert_day
                    for n in got
                ), (a, got)
            elif rule == "CERTIFICATION_MISSING":
                event("checked: CERTIFICATION_MISSING")
                first = _date(a["observed"]["episode_first_day"])
                assert first + timedelta(days=21) <= alert_day - timedelta(days=1)
                assert any(
                    n.kind is NoticeKind.CERTIFICATION_DUE
                    and n.due_by == first + timedelta(days=30)
                    and n.episode_start == first
                    and n.discipline == a["discipline"]
                    and n.as_of <= alert_day
                    for n in got
                ), (a, got)
            elif rule == "RECERTIFICATION_MISSING":
                end = _date(a["expected"]["certified_through"])
                event("raised: RECERTIFICATION_MISSING")
                if _recert_was_foreseeable(runs[ref].history, a, end, start):
                    event("checked: RECERTIFICATION_MISSING")
                    assert any(
                        n.kind is NoticeKind.RECERTIFICATION_DUE
                        and n.due_by == end
                        and n.discipline == a["discipline"]
                        and n.as_of <= alert_day
                        for n in got
                    ), (a, got)
            elif rule == "KX_MODIFIER_MISSING":
                year = int(a["expected"]["year"])
                bucket = a["expected"]["bucket"]
                limit = THRESHOLD[year]
                near = any(
                    dd < alert_day and y == year and b == bucket and limit * 9 / 10 <= acc <= limit
                    for dd, y, b, acc in accruals[ref]
                )
                if near:
                    event("checked: KX_MODIFIER_MISSING")
                    assert any(
                        n.kind is NoticeKind.KX_THRESHOLD_NEAR
                        and n.observed["year"] == year
                        and n.observed["bucket"] == bucket
                        and n.as_of < alert_day
                        for n in got
                    ), (a, got)
        _check_due_between(runs[ref].history, eng)


def _recert_was_foreseeable(
    history: PatientHistory, alert: dict[str, Any], end: date, start: date
) -> bool:
    """Whether on some date X in [end - 14, end] the records dated <= X already made a visit on
    end + 1 (of the alert's discipline and payer) RECERTIFICATION_MISSING through `end`: the
    alert's own rule (`Engine.check`), not the notice code."""
    eng = engine()
    records = [vs[-1] for vs in history.visits]
    after = end + timedelta(days=1)
    for k in range(14, -1, -1):
        x = end - timedelta(days=k)
        upto = [r for r in records if r.date_of_service <= x]
        if not upto:
            continue
        probe = Visit((after - start).days, alert["discipline"], False, "1.00", ())
        data = probe.payload(alert["patient_ref"], start, "V-PROBE", True)
        seq = max(r.seq for r in upto) + 1
        found = eng.check(model(data), history_of(upto), seq)
        for f in found:
            if (
                f.rule_id == "RECERTIFICATION_MISSING"
                and f.expected.get("certified_through") == end.isoformat()
            ):
                note(f"foreseeable on {x}")
                return True
    return False


def _check_due_between(history: PatientHistory, eng: Engine) -> None:
    records: list[VisitRecord] = [vs[-1] for vs in history.visits]
    if not records:
        return
    a = min(r.date_of_service for r in records) - timedelta(days=3)
    b = max(r.date_of_service for r in records) + timedelta(days=100)
    naive: dict[tuple[str, str, str], date] = {}
    day = a
    while day <= b:
        on = due_on(records, day, eng.rules)
        # `_may_be_due` (the cheap window test before any view) is a cover: without it, the
        # same notices.
        with patch.object(notices, "_may_be_due", lambda *_: True):
            assert due_on(records, day, eng.rules) == on, day
        upto = [r for r in records if r.date_of_service <= day]
        assert on == due_on(upto, day, eng.rules), day  # only records dated <= the date
        for n in on:
            naive.setdefault((n.kind, n.episode, n.identity), day)
        day += timedelta(days=1)
    ranged = {
        (n.kind, n.episode, n.identity): n.as_of for n in due_between(records, a, b, eng.rules)
    }
    assert ranged == naive


def _date(value: object) -> date:
    """An alert body's date (a `date` before serialisation, an ISO string after)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))
