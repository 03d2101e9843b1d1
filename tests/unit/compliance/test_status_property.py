"""VisitStatus v1 against a from-scratch oracle (EVENTS.md "VisitStatus v1": `open_alerts` is
"every alert that holds for the visit given everything the service knows now"; "Later
information re-judges the visits it affects"; "v1 additions": "Episode and claim-level rules see
what the service has seen ... a corrected event for the same `visit_id` replaces the earlier one
... A visit that arrives late ... is judged at its own date ... a certification with
`delay_reason_documented` covers the earlier visits of its interval").

The property: random histories of one patient (corrections, late visits, same-day NCCI pairs,
duplicate evaluations, add-ons without their primary, Medicare amounts across the KX threshold,
delayed certifications, re-deliveries) are fed through `Engine.evaluate(event, now, history,
seq)` with seq = 1, 2, 3, ...; after every prefix, the last status published for each visit
seen (its `event_id`, its set of open alert ids and its `status`) equals the oracle's.

The oracle judges each visit anew from the prefix's final versions only:
- the final event of each visit is the last event of the prefix with a new `event_id` for its
  `visit_id`; the visit's place is the seq of its first event (a correction keeps its visit's
  place: the one order (date of service, first seq) of compliance/episodes/segments.py, under
  which docs/rules.md "Claim-level rules" judges a visit with the visits of its date seen
  before it);
- it builds a fresh `PatientHistory` holding exactly one record per visit, made directly from
  the final event (`VisitRecord.of` with `seq` = `first_seq` = the visit's first seq; no engine
  evaluation, no status, no earlier versions), then judges each visit's final event with the
  ordinary rule run (`Engine.check(final, fresh_history, seq)` with a seq above all of them:
  every other visit is known, the visit keeps its place), and takes the alert ids and the
  severities of everything that run finds (all rule families, OWN included);
- expected: `event_id` = the final event's id, open ids = those alert ids, `status` = hold /
  review / ready from their severities (computed here, not by compliance/status.py).
It is independent of the incremental code under test: it never reads a published status, the
incremental history, compliance/rejudge.py (which visits an event affects, the KX crossings),
`Engine.judge_now` (the re-judgement run over a record rebuilt by `_visit_of`), the rule scopes
(`SCOPE_OF`: which alerts a re-judgement keeps and which it replaces) or the status merging.
What it shares with the engine is the judgement of ONE visit against a given history: the rule
functions and `Engine.check` (`_run`: the visits of its date placed before it, its episode
segment and KX accrual from the visits before it in the order, and the delayed certifications
of later visits of its episode, compliance/episodes/judge.py). That single judgement is what
the other compliance tests pin against the contract; this property tests that the incremental
statuses (first judgement, then re-judgements) always agree with it on the whole prefix.
`Engine.judge_now` is deliberately not used (it is the re-judgement under test).

Within the horizons: dates of service span at most 60 days (the same-day horizon is 90, the
episode horizon 400), so every visit stays judgeable. Also checked on every status: its version
is the previous one + 1, `resolved_alert_ids` is exactly the previous open ids that are gone,
every open id was published on the alert topic, and a re-delivered event publishes no status.

Deterministic tests below pin the mirror cases (each also a minimal reproduction when it fails).
On 3cb5008 the property and two of them FAIL (marked by comments, not xfail): the add-on family
split of TIMED_UNITS_MISALLOCATED reads the day's earlier visits but is never re-judged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

from compliance import ENGINE_VERSION, Engine, PatientHistory
from compliance.alerts import build_alerts
from compliance.episodes.build import episode_part
from compliance.records import VisitRecord
from compliance.rules.context import VisitContext
from compliance.state import history_of
from tests.factories import EVALUATION, MODIFIER, doc, episode_visit, line, model, payload
from tests.unit.compliance.episode_helpers import day

NOW = datetime(2026, 12, 31, tzinfo=UTC)
#: Above every seq of a generated history: the oracle's judged event comes after all of them.
BEYOND = 1_000_000
#: Two valid NPIs (Luhn with prefix 80840): same-day NCCI edits need the same rendering NPI.
NPIS = ("1234567893", "1987654328")
#: 2026: one KX year; 2025-12-01: histories that span two KX years (2025 and 2026 thresholds).
STARTS = (date(2026, 3, 2), date(2025, 12, 1))
VISIT_IDS = ("V-1", "V-2", "V-3", "V-4", "V-5")
RE_EVALUATION = {"PT": "97164", "OT": "97168"}
AMOUNTS = (None, "90.00", "600.00", "1250.00", "2450.00")


# --- histories ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ln:
    """A service line: (cpt, units, minutes) with a KX modifier, a 59 bypass, an amount."""

    cpt: str
    units: int
    minutes: int | None
    kx: bool = False
    bypass: bool = False
    amount: str | None = None


@dataclass(frozen=True)
class Doc:
    """An episode document. Dates are day offsets from the history's start."""

    kind: str
    author: str = "PT"
    signed: bool = True
    signed_late: int = 0  # days after the visit's date of service
    delay_reason: bool = False
    covers_from: int | None = None
    covers_through: int | None = None  # days after covers_from (or after the visit)
    cpt: str | None = None
    verbal: bool = False  # a verbal order on the visit's date (signed `signed_late` days later)
    sent: bool = False  # a plan sent to the certifier on the visit's date
    discipline: str | None = None  # a referral's


@dataclass(frozen=True)
class Version:
    """One event of a visit (its first, or a correction)."""

    visit_id: str
    day: int
    discipline: str = "PT"
    medicare: bool = True
    npi: int = 0
    lines: tuple[Ln, ...] = ()
    docs: tuple[Doc, ...] = ()
    episode_ref: str | None = None
    start: int | None = None  # episode_start_date, days after the history's start

    def payload(self, start: date, event_id: str) -> dict[str, Any]:
        dos = start + timedelta(days=self.day)
        mod = MODIFIER[self.discipline]
        services = []
        for i, ln in enumerate(self.lines):
            mods = [mod, *(["KX"] if ln.kx else []), *(["59"] if ln.bypass else [])]
            extra = {"allowed_amount": ln.amount} if ln.amount is not None else {}
            services.append(line(str(i + 1), ln.cpt, ln.units, ln.minutes, mods, **extra))
        documents = []
        for i, d in enumerate(self.docs):
            signed = f"{dos + timedelta(days=d.signed_late)}T18:00:00Z" if d.signed else None
            fields: dict[str, Any] = {}
            if d.delay_reason:
                fields["delay_reason_documented"] = True
            if d.covers_from is not None:
                fields["covers_from"] = (start + timedelta(days=d.covers_from)).isoformat()
            if d.covers_through is not None:
                base = start + timedelta(days=d.covers_from) if d.covers_from is not None else dos
                fields["covers_through"] = (base + timedelta(days=d.covers_through)).isoformat()
            if d.cpt is not None:
                fields["cpt"] = d.cpt
            if d.verbal:
                fields["verbal"] = dos.isoformat()
            if d.sent:
                fields["sent"] = dos.isoformat()
            if d.discipline is not None:
                fields["discipline"] = d.discipline
            documents.append(doc(d.kind, f"D-{i}", signed=signed, author=d.author, **fields))
        timed = sum(ln.minutes or 0 for ln in self.lines)
        return payload(
            event_id=event_id,
            visit_id=self.visit_id,
            date_of_service=dos.isoformat(),
            occurred_at=f"{dos}T20:00:00Z",
            discipline=self.discipline,
            payer=(
                {"payer_id": "MEDICARE-B", "kind": "medicare"}
                if self.medicare
                else {"payer_id": "ACME", "kind": "commercial"}
            ),
            rendering_provider={"npi": NPIS[self.npi], "credential": self.discipline},
            services=services,
            total_timed_minutes=timed,
            total_treatment_minutes=timed + 30,
            documents=documents,
            episode_ref=self.episode_ref or ...,
            episode_start_date=(
                (start + timedelta(days=self.start)).isoformat() if self.start is not None else ...
            ),
        )


@dataclass(frozen=True)
class History:
    start: date
    #: (event_id, version): a re-delivery repeats an earlier pair.
    events: tuple[tuple[str, Version], ...]

    def payloads(self) -> list[dict[str, Any]]:
        return [v.payload(self.start, e) for e, v in self.events]


WITH_KX = st.sampled_from([False, False, True])
AMOUNT = st.sampled_from(AMOUNTS)


@cache
def evaluations_of(discipline: str) -> st.SearchStrategy[Ln]:
    codes = ["97161", "97162", "97163"] if discipline == "PT" else [EVALUATION[discipline]]
    return st.builds(Ln, st.sampled_from(codes), st.just(1), st.none(), WITH_KX, amount=AMOUNT)


@cache
def lines_of(discipline: str) -> st.SearchStrategy[Ln]:
    tx = st.builds(
        Ln,
        st.just("97110"),
        st.sampled_from([1, 2]),
        st.sampled_from([15, 30]),
        WITH_KX,
        amount=AMOUNT,
    )
    return st.one_of(
        tx,
        tx,
        st.builds(Ln, st.just(RE_EVALUATION[discipline]), st.just(1), st.none(), WITH_KX),
        st.builds(Ln, st.just("97750"), st.just(1), st.just(15), WITH_KX, st.booleans(), AMOUNT),
        st.builds(
            Ln, st.just("97129"), st.sampled_from([1, 2]), st.sampled_from([15, 30]), WITH_KX
        ),
        st.builds(Ln, st.just("97130"), st.just(1), st.just(15), WITH_KX, amount=AMOUNT),
        st.builds(Ln, st.just("97140"), st.just(0), st.just(5)),  # performed, not billed
    )


@cache
def docs() -> st.SearchStrategy[Doc]:
    plan = st.builds(Doc, st.just("plan_of_care"), signed=st.booleans())
    delayed = st.builds(  # a certification signed late, with its reason (sec. 220.1.3 D)
        Doc,
        st.just("certification"),
        st.just("MD"),
        signed_late=st.sampled_from([0, 0, 3]),
        delay_reason=st.just(True),
        covers_from=st.none() | st.sampled_from([0, 2, 10, 30]),
        covers_through=st.none() | st.sampled_from([20, 60]),
    )
    written = st.builds(Doc, st.just("written_report"), cpt=st.just("97750"))
    return st.one_of(
        plan,
        plan,
        delayed,
        delayed,
        written,
        written,
        st.builds(Doc, st.just("certification"), st.just("MD")),
        st.builds(  # a short certified interval: later visits need a recertification
            Doc, st.just("certification"), st.just("MD"), covers_through=st.sampled_from([5, 20])
        ),
        st.builds(  # a verbal order, signed within its 14 days or not
            Doc,
            st.just("certification"),
            st.just("MD"),
            st.booleans(),
            st.sampled_from([0, 10, 20]),
            verbal=st.just(True),
        ),
        st.builds(Doc, st.just("progress_report"), st.sampled_from(["PT", "PTA"])),
        st.builds(Doc, st.just("discharge_summary")),
        # The CY 2025 referral exception: a signed referral and the plan sent to the certifier.
        st.builds(Doc, st.just("referral"), st.just("MD"), discipline=st.just("PT")),
        st.builds(Doc, st.just("plan_of_care"), sent=st.just(True)),
    )


@st.composite
def versions(draw: st.DrawFn, visit_id: str, days: list[int]) -> Version:
    discipline = draw(st.sampled_from(["PT", "PT", "PT", "OT"]))
    evaluation = draw(st.integers(0, 9)) >= (3 if visit_id == VISIT_IDS[0] else 9)
    evaluated = [draw(evaluations_of(discipline))] if evaluation else []
    return Version(
        visit_id,
        draw(st.sampled_from(days)),
        discipline,
        draw(st.sampled_from([True, True, True, False])),
        draw(st.sampled_from([0, 0, 0, 1])),
        # V-1 is most often the initial evaluation that opens the episode; another visit now and
        # then evaluates too (a duplicate evaluation, a new episode).
        (*evaluated, *draw(st.lists(lines_of(discipline), max_size=3))),
        tuple(draw(st.lists(docs(), max_size=2))),
        # Now and then an episode the EHR names, or whose first day it gives.
        draw(st.sampled_from([None, None, None, None, "EP-1"])),
        draw(st.sampled_from([None, None, None, None, 0])),
    )


@st.composite
def histories(draw: st.DrawFn) -> History:
    # A few dates within 60 days, so that visits share dates (same-day rules) and arrive out of
    # date order (late visits); every date within the 90-day same-day horizon.
    # The first of them early, so that later ones fall due for a certification (day 31 on).
    days = [draw(st.integers(0, 5))]
    days += draw(st.lists(st.integers(0, 59), max_size=2))
    events: list[tuple[str, Version]] = []
    for i in range(draw(st.integers(2, 12))):
        if events and draw(st.integers(0, 7)) == 7:  # re-delivery of an earlier event
            events.append(events[draw(st.integers(0, len(events) - 1))])
            continue
        visit_id = draw(st.sampled_from(VISIT_IDS[: draw(st.integers(1, len(VISIT_IDS)))]))
        events.append((f"E-{i}", draw(versions(visit_id, days))))
    return History(draw(st.sampled_from(STARTS)), tuple(events))


# --- the incremental side ---------------------------------------------------------------------


@dataclass
class Prefix:
    """What the engine published after a prefix, and what the prefix's final versions are."""

    seq: int
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # visit_id -> status body
    finals: dict[str, dict[str, Any]] = field(default_factory=dict)  # visit_id -> payload
    firsts: dict[str, int] = field(default_factory=dict)  # visit_id -> seq of its first event
    published: set[str] = field(default_factory=set)  # alert ids on the alert topic
    #: What the history exercised (hypothesis `event` labels): re-judgements by rule, ...
    labels: set[str] = field(default_factory=set)


def replay(engine: Engine, events: list[dict[str, Any]]) -> Iterator[Prefix]:
    """Feed the events with seq = 1, 2, ...; after each, the state of the prefix (shared and
    updated in place: read it before the next one). Checks each status against its visit's
    previous one (version + 1, resolved ids a delta) and re-deliveries (no status)."""
    h = PatientHistory()
    state = Prefix(0)
    seen: set[str] = set()
    for seq, data in enumerate(events, start=1):
        outcome = engine.evaluate(model(data), NOW, h, seq)
        assert outcome.history is not None
        h = outcome.history
        visit_id, event_id = data["visit_id"], data["event_id"]
        if event_id in seen:
            assert outcome.statuses == [], "a re-delivered event publishes no status"
            state.labels.add("re-delivery")
        else:
            if visit_id in state.finals:
                state.labels.add("correction")
            elif any(data["date_of_service"] < f["date_of_service"] for f in state.finals.values()):
                state.labels.add("late visit")
            seen.add(event_id)
            state.finals[visit_id] = data
            state.firsts.setdefault(visit_id, seq)
        state.published.update(a.alert_id for a in (*outcome.alerts, *outcome.raised))
        for s in outcome.statuses:
            body = s.body
            s.model()  # the strict contract model
            previous = state.last.get(s.visit_id)
            open_ids = {a["alert_id"] for a in body["open_alerts"]}
            if previous is None:
                assert body["version"] == 1 and body["resolved_alert_ids"] == []
            else:
                was = {a["alert_id"] for a in previous["open_alerts"]}
                assert body["version"] == previous["version"] + 1, body
                assert set(body["resolved_alert_ids"]) == was - open_ids, body
                if body["cause"]["kind"] == "related_visit":
                    rules = {a["alert_id"]: a["rule_id"] for a in previous["open_alerts"]}
                    rules.update((a["alert_id"], a["rule_id"]) for a in body["open_alerts"])
                    state.labels.update(f"re-judged: resolves {rules[i]}" for i in was - open_ids)
                    state.labels.update(f"re-judged: raises {rules[i]}" for i in open_ids - was)
            assert open_ids <= state.published, "an open alert id never published"
            state.last[s.visit_id] = body
        state.seq = seq
        yield state


# --- the oracle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    event_id: str
    open_ids: frozenset[str]
    status: str
    rules: tuple[str, ...]  # for messages


def billing_status(severities: set[str]) -> str:
    """EVENTS.md: hold with an open error, review with warnings only, else ready."""
    return "hold" if "error" in severities else "review" if "warning" in severities else "ready"


def oracle(
    engine: Engine, finals: dict[str, dict[str, Any]], firsts: dict[str, int]
) -> dict[str, Verdict]:
    """Each visit judged anew with every other visit's final version known (module docstring)."""
    order = sorted(finals, key=firsts.__getitem__)
    records = []
    for visit_id in order:
        visit = model(finals[visit_id])
        ctx = VisitContext.build(visit, engine.rules, engine.policies.resolve(visit))
        first = firsts[visit_id]
        records.append(VisitRecord.of(visit, first, episode_part(ctx), first))
    known = history_of(records)
    out = {}
    for visit_id in order:
        visit = model(finals[visit_id])
        findings = engine.check(visit, known, BEYOND)
        alerts = build_alerts(visit, findings, NOW, ENGINE_VERSION, engine.ruleset_version)
        out[visit_id] = Verdict(
            visit.event_id,
            frozenset(a.alert_id for a in alerts),
            billing_status({a.severity for a in alerts}),
            tuple(sorted(a.rule_id for a in alerts)),
        )
    return out


def published(body: dict[str, Any]) -> Verdict:
    return Verdict(
        body["event_id"],
        frozenset(a["alert_id"] for a in body["open_alerts"]),
        body["status"],
        tuple(sorted(a["rule_id"] for a in body["open_alerts"])),
    )


def describe(events: list[dict[str, Any]]) -> str:
    """The history, one event a line (for a failing example)."""
    out = []
    for seq, e in enumerate(events, start=1):
        lines = [
            (s["cpt"], s["units"], s.get("minutes"), s["modifiers"], s.get("allowed_amount"))
            for s in e["services"]
        ]
        docs = [
            {k: v for k, v in d.items() if k not in ("doc_id", "author_credential")}
            for d in e["documents"]
        ]
        ep = {k: e[k] for k in ("episode_ref", "episode_start_date") if k in e}
        out.append(
            f"{seq}: {e['event_id']} {e['visit_id']} {e['date_of_service']} {e['discipline']} "
            f"{e['payer']['kind']} npi={e['rendering_provider']['npi']} {lines} {docs} {ep}"
        )
    return "\n".join(out)


def mismatches(engine: Engine, events: list[dict[str, Any]]) -> tuple[Prefix, list[str]]:
    """The state after the last event, and every (prefix, visit) whose last published status
    differs from the oracle's verdict."""
    out = []
    state = Prefix(0)
    for state in replay(engine, events):
        expected = oracle(engine, state.finals, state.firsts)
        assert set(state.last) == set(expected), "every visit seen has a status"
        for visit_id, want in expected.items():
            got = published(state.last[visit_id])
            if got != want:
                out.append(
                    f"after event {state.seq}, {visit_id}: published {got.event_id} "
                    f"{got.status} {list(got.rules)}; oracle {want.event_id} {want.status} "
                    f"{list(want.rules)}"
                )
    return state, out


ENGINE = Engine()


# Found on 3cb5008: TIMED_UNITS_MISALLOCATED of an add-on family counts the primary's units
# billed on the day's earlier visits (97129 "initial 15 minutes": once a day), but its rule
# family was OWN scope, so no re-judgement touched it when an earlier visit of the day was
# corrected. Fixed in 7849e90 (the family split is a rule family of scope day). Minimal history:
# test_correction_that_bills_97129_on_an_earlier_visit_makes_a_later_one_misallocated.
@pytest.mark.timeout(300)  # 300 histories pass in ~20 s; shrinking a failure takes longer
@settings(max_examples=300, deadline=None)
@given(histories())
# The minimal failing history hypothesis found (the add-on family split; see above): always run.
@example(
    History(
        date(2026, 3, 2),
        (
            ("E-0", Version("V-1", 0)),
            ("E-1", Version("V-2", 0, lines=(Ln("97129", 1, 15),))),
            ("E-2", Version("V-1", 0, lines=(Ln("97129", 1, 15),))),
        ),
    )
)
def test_property_last_status_of_every_visit_equals_a_from_scratch_judgement(
    history: History,
) -> None:
    events = history.payloads()
    note(describe(events))
    state, wrong = mismatches(ENGINE, events)
    for label in sorted(state.labels):
        event(label)
    assert wrong == []


# --- mirror cases -----------------------------------------------------------------------------

D = date(2026, 3, 2)


def visit(visit_id: str, n: int, event: str = "", **kw: Any) -> dict[str, Any]:
    """A Medicare PT visit of the BASE patient on day n; `event` suffixes its event id (a
    correction); keyword arguments as `episode_visit`."""
    data = episode_visit(visit_id, day(D, n), **kw)
    data["event_id"] += event
    return data


def cfi(units: int = 1) -> list[dict[str, Any]]:
    """97129 (cognitive function intervention, initial 15 minutes: once a day)."""
    return [line("1", "97129", units, 15 * units)]


def final(*events: dict[str, Any]) -> dict[str, list[str]]:
    """Each visit's open rule ids after the events; first asserts the property on every prefix
    (and the status invariants of `replay`)."""
    state, wrong = mismatches(ENGINE, list(events))
    assert wrong == [], describe(list(events))
    return {v: sorted(a["rule_id"] for a in b["open_alerts"]) for v, b in state.last.items()}


def statuses(*events: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The status bodies each event published."""
    h = PatientHistory()
    out = []
    for seq, data in enumerate(events, start=1):
        o = ENGINE.evaluate(model(data), NOW, h, seq)
        assert o.history is not None
        h = o.history
        out.append([s.body for s in o.statuses])
    return out


MISALLOCATED = "TIMED_UNITS_MISALLOCATED"


# Failed on 3cb5008; fixed in 7849e90 (see the property test).
def test_correction_that_bills_97129_on_an_earlier_visit_makes_a_later_one_misallocated() -> None:
    # 97129 is billed once a day (docs/rules.md "Add-on families": the per-day limit counts the
    # patient's earlier visits of the day). V-1 came first that day (a correction keeps its
    # visit's place): once it bills 97129, V-2's 97129 should be 97130.
    events = [
        visit("V-1", 0, services=[]),
        visit("V-2", 0, services=cfi()),
        visit("V-1", 0, "-b", services=cfi()),
    ]
    assert MISALLOCATED in final(*events)["V-2"]


# Failed on 3cb5008; fixed in 7849e90 (see the property test).
def test_correction_that_drops_the_earlier_97129_resolves_the_later_misallocation() -> None:
    events = [
        visit("V-1", 0, services=cfi()),
        visit("V-2", 0, services=cfi()),
        visit("V-1", 0, "-b", services=[line("1", "97110", 1, 15)]),
    ]
    assert MISALLOCATED not in final(*events)["V-2"]


def test_add_on_before_or_after_its_primary_has_no_alert_once_the_day_has_both() -> None:
    # EVENTS.md ADD_ON_CODE_WITHOUT_PRIMARY: "without its primary code ... on the same date of
    # service" - a fact of the day. The morning 97130 is alerted until the afternoon visit
    # bills 97129, then its status resolves it (docs/rules.md "Claim-level rules").
    add_on = [line("1", "97130", 1, 15)]
    assert final(visit("V-1", 0, services=add_on)) == {"V-1": ["ADD_ON_CODE_WITHOUT_PRIMARY"]}
    assert final(visit("V-1", 0, services=add_on), visit("V-2", 0, services=cfi())) == {
        "V-1": [],
        "V-2": [],
    }
    assert final(visit("V-2", 0, services=cfi()), visit("V-1", 0, services=add_on)) == {
        "V-1": [],
        "V-2": [],
    }


NCCI = "NCCI_PTP_CONFLICT"


def ppt(*modifiers: str) -> dict[str, Any]:
    """97750 with its written report (NCCI Policy Manual Ch. XI sec. P.8: not separately
    reportable with 97161-97168 on the same date of service)."""
    return visit(
        "V-2",
        0,
        services=[line("1", "97750", 1, 15, ["GP", *modifiers])],
        docs=[doc("written_report", cpt="97750")],
    )


def test_ncci_pair_across_visits_follows_corrections_of_the_evaluation() -> None:
    evaluation = visit("V-1", 0, evaluation=True, docs=[doc("plan_of_care")])
    treatment = visit("V-1", 0, "-b", services=[line("1", "97110", 1, 15)])
    again = visit("V-1", 0, "-c", evaluation=True, docs=[doc("plan_of_care")])
    assert NCCI in final(evaluation, ppt())["V-2"]
    # "a same-day visit corrected to drop an evaluation resolves another visit's
    # NCCI_PTP_CONFLICT" (EVENTS.md) ...
    assert NCCI not in final(evaluation, ppt(), treatment)["V-2"]
    # ... and one corrected back raises it again, with V-2's own alert id (its event unchanged).
    out = statuses(evaluation, ppt(), treatment, again)
    [v2] = [s for s in out[3] if s["visit_id"] == "V-2"]
    assert [a["rule_id"] for a in v2["open_alerts"]] == [NCCI]
    assert v2["cause"] == {"event_id": "evt-V-1-c", "visit_id": "V-1", "kind": "related_visit"}
    first = {a["alert_id"] for a in out[1][0]["open_alerts"]}
    assert {a["alert_id"] for a in v2["open_alerts"]} == first
    # Indicator 0: 59 on the column-2 line does not bypass the edit.
    assert NCCI in final(evaluation, ppt("59"))["V-2"]


def test_ncci_pair_with_the_column_2_code_first_is_on_the_evaluation_visit() -> None:
    evaluation = visit("V-1", 0, evaluation=True, docs=[doc("plan_of_care")])
    assert NCCI in final(ppt(), evaluation)["V-1"]
    # V-2 (97750) then moves to another date: V-1's alert is resolved.
    moved = {**ppt(), "event_id": "evt-V-2-b", "date_of_service": day(D, 1)}
    moved["occurred_at"] = f"{day(D, 1)}T20:00:00Z"
    assert NCCI not in final(ppt(), evaluation, moved)["V-1"]


def test_duplicate_evaluation_follows_a_date_correction() -> None:
    # NCCI Policy Manual Ch. XI sec. P.1: one PT evaluation per date of service. V-1 moves from
    # day 0 to day 1: V-2 (day 0) loses its duplicate, V-3 (day 1, seen after V-1) gains one.
    plan = [doc("plan_of_care")]
    events = [
        visit("V-1", 0, evaluation=True, docs=plan),
        visit("V-2", 0, evaluation=True, docs=plan),
        visit("V-3", 1, evaluation=True, docs=plan),
        visit("V-1", 1, "-b", evaluation=True, docs=plan),
    ]
    assert "EVALUATION_DUPLICATE" in final(*events[:3])["V-2"]
    after = final(*events)
    assert "EVALUATION_DUPLICATE" not in after["V-2"]
    assert "EVALUATION_DUPLICATE" in after["V-3"]


KX_MISSING = "KX_MODIFIER_MISSING"


def test_late_visit_raises_kx_on_a_later_visit_and_its_lower_amount_resolves_it() -> None:
    # KX accrual per patient and calendar year (2026: 2,480.00 PT and SLP), this visit included,
    # over the visits before it by date. No evaluation seen: only the KX rules speak.
    later = visit("V-2", 10, amount="2450.00")
    late = visit("V-1", 0, amount="100.00")
    lower = visit("V-1", 0, "-b", amount="10.00")
    assert final(later) == {"V-2": []}
    assert final(later, late) == {"V-1": [], "V-2": [KX_MISSING]}  # 2,550.00
    # "a lower allowed amount on an earlier visit can resolve a later visit's
    # KX_MODIFIER_MISSING" (EVENTS.md): 2,460.00.
    assert final(later, late, lower) == {"V-1": [], "V-2": []}


CERT = "CERTIFICATION_MISSING"


def delayed(visit_id: str, n: int, event: str = "", reason: bool = True) -> dict[str, Any]:
    cert = doc("certification", author="MD", delay_reason_documented=True)
    if not reason:
        cert = doc("certification", author="MD")
    return visit(visit_id, n, event, docs=[cert])


def test_delayed_certification_reaches_back_and_its_correction_takes_it_back() -> None:
    evaluation = visit("V-0", 0, evaluation=True, docs=[doc("plan_of_care")])
    due = visit("V-1", 35)  # day 35 after the first day: a certification is due
    assert final(evaluation, due)["V-1"] == [CERT]
    # "a delayed certification signed with its reason resolves CERTIFICATION_MISSING on the
    # earlier visits it covers" (EVENTS.md) ...
    assert final(evaluation, due, delayed("V-2", 40))["V-1"] == []
    # ... a certification signed late without the reason does not reach back ...
    assert final(evaluation, due, delayed("V-2", 40, reason=False))["V-1"] == [CERT]
    # ... and a correction that drops the reason re-raises it.
    dropped = delayed("V-2", 40, "-b", reason=False)
    assert final(evaluation, due, delayed("V-2", 40), dropped)["V-1"] == [CERT]


def test_a_new_episode_between_cuts_the_reach_of_a_delayed_certification() -> None:
    # A late initial evaluation on day 38 opens a new episode: the certification of day 40
    # belongs to it, not to V-1's (day 35).
    evaluation = visit("V-0", 0, evaluation=True, docs=[doc("plan_of_care")])
    due = visit("V-1", 35)
    new_episode = visit("V-3", 38, evaluation=True, docs=[doc("plan_of_care")])
    assert final(evaluation, due, delayed("V-2", 40), new_episode)["V-1"] == [CERT]


def test_correction_that_unanchors_the_episode_resolves_its_episode_alerts() -> None:
    # "When a correction makes an episode's start unseen, its visits' open episode-rule alerts
    # are resolved" (EVENTS.md): no plan of care was written, then the evaluation is corrected
    # away (the start is no longer seen: not evaluated, never guessed).
    evaluation = visit("V-0", 0, evaluation=True)
    treatment = visit("V-1", 2)
    assert final(evaluation, treatment)["V-1"] == ["PLAN_OF_CARE_MISSING"]
    unanchored = visit("V-0", 0, "-b", services=[line("1", "97110", 1, 15)])
    assert final(evaluation, treatment, unanchored) == {"V-0": [], "V-1": []}


def test_late_progress_report_restarts_the_period_for_the_later_visits() -> None:
    # Pub. 100-02, Ch. 15, sec. 220.3 D: a report at least once every 10 treatment days. Day 0
    # (the evaluation) is treatment day 1, day 10 the 11th: overdue on days 10 and 11. A visit of
    # day 5 arriving late with a clinician's report restarts the period on day 6.
    docs = [doc("plan_of_care"), doc("certification", author="MD")]
    events = [visit("V-00", 0, evaluation=True, docs=docs)]
    events += [visit(f"V-{n:02d}", n) for n in range(1, 12)]
    before = final(*events)
    overdue = sorted(v for v, rules in before.items() if "PROGRESS_REPORT_OVERDUE" in rules)
    assert overdue == ["V-10", "V-11"]
    report = visit("V-LATE", 5, docs=[doc("progress_report")])
    after = final(*events, report)
    assert [v for v, rules in after.items() if "PROGRESS_REPORT_OVERDUE" in rules] == []


def test_correction_without_new_findings_publishes_and_a_superseded_redelivery_does_not() -> None:
    first = visit("V-1", 0, services=cfi(2))  # 97129 x2: misallocated (its own finding)
    same = visit("V-1", 0, "-b", services=cfi(2))
    out = statuses(first, same, first)
    [[one], [two], none] = out
    # "when its current event_id changes (a correction, even one that changes no alert)" ...
    assert (two["event_id"], two["version"], two["cause"]["kind"]) == ("evt-V-1-b", 2, "correction")
    assert [a["rule_id"] for a in two["open_alerts"]] == [MISALLOCATED]
    assert two["resolved_alert_ids"] == [a["alert_id"] for a in one["open_alerts"]]
    # ... "an event whose event_id was already seen publishes no status" (nor reverts one).
    assert none == []
    assert final(first, same, first) == {"V-1": [MISALLOCATED]}
