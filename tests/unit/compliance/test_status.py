"""Visit status and re-judgement (EVENTS.md "VisitStatus v1"; issue 21's examples and their
mirrors), each case next to its source. Expected alerts are worked out by hand from the cited
rule, not read from the engine; statuses are validated against the strict contract model."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

from compliance import Engine, PatientHistory
from compliance.ruleset import load_ruleset
from compliance.status import StatusEvent
from tests.factories import doc, episode_visit, line, model, other_visit, timed_visit
from tests.unit.compliance.episode_helpers import NOW, day

D0 = date(2026, 3, 2)
FIX = Path(__file__).parents[2] / "fixtures" / "ncci"


class Feed:
    """One patient's events through the engine as the worker and audit feed them (seq 1, 2...),
    keeping every status published and the newest per visit."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.history = PatientHistory()
        self.seq = 0
        self.published: list[StatusEvent] = []
        self.raised: list[dict[str, Any]] = []

    def send(self, data: dict[str, Any]) -> list[StatusEvent]:
        self.seq += 1
        out = self.engine.evaluate(model(data), NOW, self.history, self.seq)
        assert out.history is not None
        self.history = out.history
        for st in out.statuses:
            st.model()  # the contract's strict model
        self.published.extend(out.statuses)
        self.raised.extend(a.body for a in out.raised)
        return out.statuses

    def last(self, visit_id: str) -> dict[str, Any]:
        return [s for s in self.published if s.visit_id == visit_id][-1].body

    def open_rules(self, visit_id: str) -> list[str]:
        return sorted(a["rule_id"] for a in self.last(visit_id)["open_alerts"])


def corrected(data: dict[str, Any], event_id: str, **changes: Any) -> dict[str, Any]:
    return {**data, "event_id": event_id, **changes}


# --- a visit's own alerts follow its corrections ----------------------------------------------


def test_correction_resolves_its_own_timed_units_alert(engine: Engine) -> None:
    # CMS Pub. 100-04, Ch. 5, sec. 20.2: 33 minutes of 97110 support 2 units (23-37 minutes);
    # 3 units need 38. Corrected to 2 units, the visit's alert is resolved.
    feed = Feed(engine)
    first = timed_visit(("97110", 3, 33), visit_id="V-1", event_id="e1")
    [st] = feed.send(first)
    assert st.body["status"] == "hold" and st.body["version"] == 1
    assert st.body["cause"] == {"event_id": "e1", "visit_id": "V-1", "kind": "visit"}
    [opened] = st.body["open_alerts"]
    assert opened["rule_id"] == "TIMED_UNITS_EXCEED_MINUTES"
    [st2] = feed.send(corrected(first, "e2", services=[line("1", "97110", 2, 33)]))
    assert st2.body["status"] == "ready" and st2.body["open_alerts"] == []
    assert st2.body["resolved_alert_ids"] == [opened["alert_id"]]
    assert st2.body["version"] == 2 and st2.body["event_id"] == "e2"
    assert st2.body["cause"]["kind"] == "correction"
    assert st2.body["amount_at_risk"] is None


def test_mirror_a_correction_that_creates_the_alert(engine: Engine) -> None:
    # The same rule the other way: 2 units for 33 minutes are right, 3 are not (sec. 20.2).
    feed = Feed(engine)
    good = timed_visit(("97110", 2, 33), visit_id="V-1", event_id="e1")
    assert feed.send(good)[0].body["status"] == "ready"
    [st] = feed.send(corrected(good, "e2", services=[line("1", "97110", 3, 33)]))
    assert st.body["status"] == "hold" and st.body["resolved_alert_ids"] == []
    assert [a["rule_id"] for a in st.body["open_alerts"]] == ["TIMED_UNITS_EXCEED_MINUTES"]


def test_a_correction_that_changes_no_alert_still_publishes(engine: Engine) -> None:
    # EVENTS.md: "when its current event_id changes (a correction, even one that changes no
    # alert)".
    feed = Feed(engine)
    good = timed_visit(("97110", 2, 33), visit_id="V-1", event_id="e1")
    feed.send(good)
    [st] = feed.send(corrected(good, "e2"))
    assert st.body["version"] == 2 and st.body["status"] == "ready"
    assert st.body["cause"]["kind"] == "correction" and st.body["event_id"] == "e2"


def test_redelivery_publishes_nothing_and_changes_nothing(engine: Engine) -> None:
    # EVENTS.md: "an event whose event_id was already seen publishes no status"; "Re-delivery
    # of an event changes nothing" - also at a later offset, and an older event of the visit
    # re-sent after its correction.
    feed = Feed(engine)
    first = timed_visit(("97110", 3, 33), visit_id="V-1", event_id="e1")
    feed.send(first)
    before = feed.history
    assert feed.send(first) == [] and feed.history is before
    second = corrected(first, "e2", services=[line("1", "97110", 2, 33)])
    feed.send(second)
    before = feed.history
    assert feed.send(first) == [] and feed.send(second) == []
    assert feed.history is before
    assert feed.last("V-1")["version"] == 2 and feed.last("V-1")["event_id"] == "e2"


# --- same-day rules re-judged -----------------------------------------------------------------


def test_same_day_correction_dropping_the_evaluation_resolves_the_other_visits_ncci(
    engine: Engine,
) -> None:
    # NCCI Policy Manual Ch. XI sec. P.8: 97750 is not separately reportable with 97161-97168 on
    # the same date of service (indicator 0): the column-2 line (97750) carries the conflict.
    feed = Feed(engine)
    ev = other_visit("V-EV", [line("1", "97161", 1)])
    feed.send(ev)
    feed.send(other_visit("V-PPT", [line("1", "97750", 1, 15)]))
    assert "NCCI_PTP_CONFLICT" in feed.open_rules("V-PPT")
    [ncci] = [a for a in feed.last("V-PPT")["open_alerts"] if a["rule_id"] == "NCCI_PTP_CONFLICT"]
    statuses = feed.send(corrected(ev, "evt-V-EV-2", services=[line("1", "97110", 1, 15)]))
    assert [s.visit_id for s in statuses] == ["V-EV", "V-PPT"]
    released = statuses[1].body
    assert "NCCI_PTP_CONFLICT" not in [a["rule_id"] for a in released["open_alerts"]]
    assert released["cause"] == {
        "event_id": "evt-V-EV-2",
        "visit_id": "V-EV",
        "kind": "related_visit",
    }
    # Also resolved: V-PPT's PLAN_OF_CARE_MISSING, since without the evaluation the episode's
    # start is no longer seen (EVENTS.md: its episode-rule alerts are resolved).
    assert ncci["alert_id"] in released["resolved_alert_ids"]
    assert released["version"] == 2 and released["event_id"] == "evt-V-PPT"


def test_mirror_same_day_correction_adding_the_evaluation_raises_on_the_later_visit(
    engine: Engine,
) -> None:
    # The same edit appears when a correction adds the evaluation: the later-arrived visit's
    # 97750 line now conflicts (sec. P.8); the new alert is published on the alert topic
    # (ids from V-PPT's current event).
    feed = Feed(engine)
    tx = other_visit("V-EV", [line("1", "97110", 1, 15)])
    feed.send(tx)
    feed.send(other_visit("V-PPT", [line("1", "97750", 1, 15)]))
    assert "NCCI_PTP_CONFLICT" not in feed.open_rules("V-PPT")
    statuses = feed.send(corrected(tx, "evt-V-EV-2", services=[line("1", "97161", 1)]))
    assert [s.visit_id for s in statuses] == ["V-EV", "V-PPT"]
    assert statuses[1].body["status"] == "hold"
    # Also raised: PLAN_OF_CARE_MISSING, since the evaluation now opens the episode and V-PPT
    # treats without a plan (Pub. 100-02, Ch. 15, sec. 220.1.2).
    assert sorted(a["rule_id"] for a in feed.raised) == [
        "NCCI_PTP_CONFLICT",
        "PLAN_OF_CARE_MISSING",
    ]
    [raised] = [a for a in feed.raised if a["rule_id"] == "NCCI_PTP_CONFLICT"]
    assert raised["visit_id"] == "V-PPT"
    assert raised["event_id"] == "evt-V-PPT" and raised["line_ids"] == ["1"]
    assert raised["alert_id"] in [a["alert_id"] for a in statuses[1].body["open_alerts"]]


def test_evaluation_duplicate_follows_a_correction(engine: Engine) -> None:
    # NCCI Policy Manual Ch. XI sec. P.1: one evaluation (or re-evaluation) per discipline per
    # date of service. The second visit carries the duplicate; correcting the first to a
    # treatment resolves it.
    feed = Feed(engine)
    first = other_visit("V-A", [line("1", "97162", 1)])
    feed.send(first)
    feed.send(other_visit("V-B", [line("1", "97163", 1)]))
    assert feed.open_rules("V-B") == ["EVALUATION_DUPLICATE"]
    feed.send(corrected(first, "evt-V-A-2", services=[line("1", "97110", 1, 15)]))
    assert feed.open_rules("V-B") == [] and feed.last("V-B")["version"] == 2


def test_add_on_primary_arriving_later_in_another_visit_resolves_the_add_on(
    engine: Engine,
) -> None:
    # CPT descriptor of 97130 (each additional 15 minutes, list separately in addition to
    # 97129): the primary billed the same day in an earlier-placed visit counts. The visit
    # billing 97129 is corrected in: V-ADD's alert resolves.
    feed = Feed(engine)
    first = other_visit("V-PRI", [line("1", "97110", 1, 15)])
    feed.send(first)
    feed.send(other_visit("V-ADD", [line("1", "97130", 1, 15)]))
    assert feed.open_rules("V-ADD") == ["ADD_ON_CODE_WITHOUT_PRIMARY"]
    feed.send(corrected(first, "evt-V-PRI-2", services=[line("1", "97129", 1, 15)]))
    assert feed.open_rules("V-ADD") == []


def test_mue_summed_across_visits_follows_a_correction(tmp_path: Path) -> None:
    # MUE adjudication indicator 3 (date of service edit, EVENTS.md: units summed over patient,
    # rendering NPI and date of service, across visits). Fixture file: 97110 MUE 4 (MAI 3) in
    # January 2026. 3 + 2 = 5 > 4 on V-B; V-A corrected to 2 units: 4, resolved.
    d = tmp_path / "ruleset"
    (d / "ncci" / "mue").mkdir(parents=True)
    shutil.copy(FIX / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv", d / "ncci" / "mue")
    feed = Feed(Engine(ruleset=load_ruleset(d)))
    first = other_visit("V-A", [line("1", "97110", 3, 45)])
    feed.send(first)
    feed.send(other_visit("V-B", [line("1", "97110", 2, 30)]))
    assert feed.open_rules("V-B") == ["MUE_EXCEEDED"]
    feed.send(corrected(first, "evt-V-A-2", services=[line("1", "97110", 2, 30)]))
    assert feed.open_rules("V-B") == [] and feed.last("V-B")["status"] == "ready"


# --- episode rules: a delayed certification reaches back ----------------------------------------


def delayed_cert(signed: int, start: int, through: int) -> dict[str, Any]:
    """A certification signed on day `signed` with the reason for its delay documented (sec.
    220.1.3 D), covering days `start` through `through`."""
    return doc(
        "certification",
        author="MD",
        signed=day(D0, signed),
        delay_reason_documented=True,
        covers_from=day(D0, start),
        covers_through=day(D0, through),
    )


def _episode(feed: Feed, n: int) -> None:
    """An initial evaluation with a signed plan, then treatment visits on days 10, 20, ... n
    (a progress report at each keeps PROGRESS_REPORT_OVERDUE out of the way); no certification."""
    feed.send(episode_visit("V-EVAL", D0.isoformat(), evaluation=True, docs=[doc("plan_of_care")]))
    for k in range(10, n + 1, 10):
        feed.send(episode_visit(f"V-{k}", day(D0, k), docs=[doc("progress_report")]))


def test_delayed_certification_resolves_certification_missing_on_the_visits_it_covers(
    engine: Engine,
) -> None:
    # Pub. 100-02, Ch. 15, sec. 220.1.3 B: certification due within 30 days of the first day;
    # sec. 220.1.3 D: a delayed certification with its reason is accepted regardless of
    # lateness; EVENTS.md: it "covers the earlier visits of its interval". Days 40 and 50 are
    # past day 30 uncertified; a certification with its delay reason, signed on day 60 and
    # covering days 0-59, releases them; the visit of day 70 is after its interval: untouched
    # by it (and judged with the certification itself, so clean).
    feed = Feed(engine)
    _episode(feed, 50)
    assert {v: feed.open_rules(v) for v in ("V-30", "V-40", "V-50")} == {
        "V-30": [],
        "V-40": ["CERTIFICATION_MISSING"],
        "V-50": ["CERTIFICATION_MISSING"],
    }
    cert = delayed_cert(60, 0, 59)
    statuses = feed.send(episode_visit("V-60", day(D0, 60), docs=[doc("progress_report"), cert]))
    assert [s.visit_id for s in statuses] == ["V-60", "V-40", "V-50"]
    for s in statuses[1:]:
        assert s.body["status"] == "ready" and s.body["cause"]["kind"] == "related_visit"
        assert len(s.body["resolved_alert_ids"]) == 1


def test_delayed_certification_does_not_reach_outside_its_interval(engine: Engine) -> None:
    # The same certification covering days 45-59 only: day 40 stays uncertified (sec.
    # 220.1.3 D accepts the late certification for what it certifies, not more).
    feed = Feed(engine)
    _episode(feed, 50)
    cert = delayed_cert(60, 45, 59)
    statuses = feed.send(episode_visit("V-60", day(D0, 60), docs=[doc("progress_report"), cert]))
    assert [s.visit_id for s in statuses] == ["V-60", "V-50"]
    assert feed.open_rules("V-40") == ["CERTIFICATION_MISSING"]


def test_mirror_correction_removing_the_delay_reason_reopens_certification_missing(
    engine: Engine,
) -> None:
    # Without its reason, a certification signed on day 60 is not on file on days 40 and 50
    # (sec. 220.1.3 B: "dated in the 30 days following the first day"): the alerts are raised
    # again, with new ids? No: ids come from each visit's own current event, so the same ids.
    feed = Feed(engine)
    _episode(feed, 50)
    opened = {v: feed.last(v)["open_alerts"][0]["alert_id"] for v in ("V-40", "V-50")}
    cert = delayed_cert(60, 0, 59)
    late = episode_visit("V-60", day(D0, 60), docs=[doc("progress_report"), cert])
    feed.send(late)
    no_reason = {**cert, "delay_reason_documented": False}
    statuses = feed.send(
        corrected(
            late,
            "evt-V-60-2",
            documents=[
                {
                    **doc("progress_report"),
                    "doc_id": "D-1",
                    "signed_at": f"{day(D0, 60)}T18:00:00Z",
                },
                {**no_reason, "doc_id": "D-2", "signed_at": f"{day(D0, 60)}T18:00:00Z"},
            ],
        )
    )
    assert [s.visit_id for s in statuses] == ["V-60", "V-40", "V-50"]
    for s in statuses[1:]:
        [a] = s.body["open_alerts"]
        assert s.body["status"] == "hold" and a["alert_id"] == opened[s.visit_id]
    assert sorted(a["visit_id"] for a in feed.raised) == ["V-40", "V-50"]


def test_start_made_unseen_resolves_the_episode_alerts(engine: Engine) -> None:
    # EVENTS.md: "When a correction makes an episode's start unseen, its visits' open
    # episode-rule alerts are resolved" (the rules that need the start are not evaluated).
    feed = Feed(engine)
    ev = episode_visit("V-EVAL", D0.isoformat(), evaluation=True, docs=[doc("plan_of_care")])
    feed.send(ev)
    feed.send(episode_visit("V-40", day(D0, 40), docs=[doc("progress_report")]))
    assert feed.open_rules("V-40") == ["CERTIFICATION_MISSING"]
    # The first visit was not an evaluation after all: a treatment visit, no start seen.
    feed.send(corrected(ev, "evt-V-EVAL-2", services=[line("1", "97110", 1, 15, ["GP"])]))
    assert feed.open_rules("V-40") == []


# --- KX accrual re-judged ---------------------------------------------------------------------


def _kx(visit_id: str, n: int, amount: str, kx: bool = False) -> dict[str, Any]:
    docs = [doc("plan_of_care"), doc("certification", author="MD"), doc("progress_report")]
    return episode_visit(visit_id, day(D0, n), amount=amount, docs=docs, kx=kx)


def test_lower_allowed_amount_on_an_earlier_visit_resolves_a_later_kx_missing(
    engine: Engine,
) -> None:
    # Pub. 100-04, Ch. 5, sec. 10.3; CY 2026 threshold $2,480 (PT and SLP). 2,400 + 100 =
    # 2,500 > 2,480: V-2 lacks KX. V-1 corrected to 2,300: 2,400 <= 2,480, V-2 is released.
    feed = Feed(engine)
    v1 = _kx("V-1", 0, "2400.00")
    feed.send(v1)
    feed.send(_kx("V-2", 2, "100.00"))
    assert feed.open_rules("V-2") == ["KX_MODIFIER_MISSING"]
    bad = feed.last("V-2")["open_alerts"][0]
    statuses = feed.send(
        corrected(v1, "evt-V-1-2", services=[{**v1["services"][0], "allowed_amount": "2300.00"}])
    )
    assert [s.visit_id for s in statuses] == ["V-1", "V-2"]
    assert statuses[1].body["resolved_alert_ids"] == [bad["alert_id"]]
    assert statuses[1].body["status"] == "ready"


def test_mirror_higher_allowed_amount_raises_kx_missing_on_the_later_visit(
    engine: Engine,
) -> None:
    # 2,300 + 100 = 2,400 <= 2,480; corrected to 2,400: 2,500 > 2,480 (sec. 10.3).
    feed = Feed(engine)
    v1 = _kx("V-1", 0, "2300.00")
    feed.send(v1)
    feed.send(_kx("V-2", 2, "100.00"))
    feed.send(_kx("V-3", 4, "0.00"))  # adds nothing; its line lacks KX like V-2's
    assert feed.open_rules("V-2") == []
    feed.send(
        corrected(v1, "evt-V-1-2", services=[{**v1["services"][0], "allowed_amount": "2400.00"}])
    )
    assert feed.open_rules("V-2") == ["KX_MODIFIER_MISSING"]
    assert feed.open_rules("V-3") == ["KX_MODIFIER_MISSING"]  # 2,500 + 0 > 2,480 too
    assert sorted(a["visit_id"] for a in feed.raised) == ["V-2", "V-3"]


def test_kx_premature_mirror_follows_the_accrual(engine: Engine) -> None:
    # KX_MODIFIER_PREMATURE below 90% of $2,480 = $2,232 (EVENTS.md; kx_thresholds.toml):
    # 2,100 + 100 (KX) = 2,200 < 2,232 is premature; V-1 corrected to 2,200: 2,300, not.
    feed = Feed(engine)
    v1 = _kx("V-1", 0, "2100.00")
    feed.send(v1)
    feed.send(_kx("V-2", 2, "100.00", kx=True))
    assert feed.open_rules("V-2") == ["KX_MODIFIER_PREMATURE"]
    assert feed.last("V-2")["status"] == "review"  # a warning only
    feed.send(
        corrected(v1, "evt-V-1-2", services=[{**v1["services"][0], "allowed_amount": "2200.00"}])
    )
    assert feed.open_rules("V-2") == [] and feed.last("V-2")["status"] == "ready"


def test_kx_correction_that_crosses_nothing_rejudges_no_one(engine: Engine) -> None:
    # 1,000 + 100: far below both the share and the threshold before and after V-1's
    # correction to 1,100: V-2's verdict cannot change, so it gets no new status.
    feed = Feed(engine)
    v1 = _kx("V-1", 0, "1000.00")
    feed.send(v1)
    feed.send(_kx("V-2", 2, "100.00"))
    statuses = feed.send(
        corrected(v1, "evt-V-1-2", services=[{**v1["services"][0], "allowed_amount": "1100.00"}])
    )
    assert [s.visit_id for s in statuses] == ["V-1"]


# --- review findings: amounts, delayed recertification ---------------------------------------


def test_an_amount_change_with_the_same_alert_ids_publishes_a_status(engine: Engine) -> None:
    # NCCI Policy Manual Ch. XI sec. P.8: 97750 (column 2) on the earlier visit V-A, 97161 on
    # V-B the same day: V-B carries the alert, and its amount at risk is V-A's 97750 allowed
    # amount. V-A corrected from 50.00 to 80.00: V-B's alert keeps its id (V-B's event did
    # not change) but its amount is now 80.00, so V-B's status says so (a billing system sums
    # amount_at_risk).
    feed = Feed(engine)
    a = other_visit("V-A", [line("1", "97750", 1, 15, allowed_amount="50.00")])
    feed.send(a)
    feed.send(other_visit("V-B", [line("1", "97161", 1)]))
    [ncci] = [x for x in feed.last("V-B")["open_alerts"] if x["rule_id"] == "NCCI_PTP_CONFLICT"]
    assert ncci["amount_at_risk"] == "50.00"
    statuses = feed.send(
        corrected(a, "evt-V-A-2", services=[line("1", "97750", 1, 15, allowed_amount="80.00")])
    )
    assert [s.visit_id for s in statuses] == ["V-A", "V-B"]
    [now] = [x for x in statuses[1].body["open_alerts"] if x["rule_id"] == "NCCI_PTP_CONFLICT"]
    assert now["alert_id"] == ncci["alert_id"] and now["amount_at_risk"] == "80.00"
    assert statuses[1].body["resolved_alert_ids"] == []


def test_delayed_recertification_reaches_the_earlier_visits_of_its_interval(
    engine: Engine,
) -> None:
    # Pub. 100-02, Ch. 15, sec. 220.1.3 C: treatment beyond the certified interval needs a
    # recertification; sec. 220.1.3 D: a delayed (re)certification with its reason is accepted.
    # The certification covers days 0-89 (start + 89: 90 dates); days 95 and 100 are past it.
    # A recertification covering days 90-179, signed on day 110 with its reason, releases them.
    feed = Feed(engine)
    cert = doc("certification", author="MD", covers_from=day(D0, 0), covers_through=day(D0, 89))
    feed.send(
        episode_visit("V-EVAL", D0.isoformat(), evaluation=True, docs=[doc("plan_of_care"), cert])
    )
    for k in (95, 100):
        feed.send(episode_visit(f"V-{k}", day(D0, k), docs=[doc("progress_report")]))
    assert feed.open_rules("V-95") == ["RECERTIFICATION_MISSING"]
    recert = delayed_cert(110, 90, 179)
    statuses = feed.send(
        episode_visit("V-110", day(D0, 110), docs=[doc("progress_report"), recert])
    )
    assert [s.visit_id for s in statuses] == ["V-110", "V-95", "V-100"]
    assert feed.open_rules("V-95") == [] and feed.open_rules("V-100") == []
