"""Claim-level rules (EVENTS.md "v1 additions"), each case next to its source.

Add-on families: CPT descriptors of 97129 ("initial 15 minutes") / 97130 ("each additional 15
minutes", add-on to 97129) and 97550 ("initial 30 minutes") / 97551. NCCI: Policy Manual for
Medicare Services Ch. XI sec. P.1 and P.8; PTP/MUE files: tests/fixtures/ncci (synthetic
therapy rows in the CMS layouts). CQ/CO: CMS Pub. 100-04 Ch. 5 sec. 20.1 and CMS "Billing
Examples Using CQ/CO Modifiers ...". Totals: Pub. 100-02 Ch. 15 sec. 220.3.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from compliance import Engine, Finding, PatientHistory
from compliance.ruleset import load_ruleset
from tests.factories import line, model, other_visit, payload, timed_visit
from tests.unit.conftest import rule_ids

FIX = Path(__file__).parents[2] / "fixtures" / "ncci"
NOW = datetime(2026, 3, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def ncci_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    d = tmp_path_factory.mktemp("ruleset")
    (d / "ncci" / "ptp").mkdir(parents=True)
    (d / "ncci" / "mue").mkdir(parents=True)
    (d / "fees").mkdir()
    shutil.copy(FIX / "ccipra-v322r0-f4.TXT", d / "ncci" / "ptp")
    for name in ("01-01-2026", "04-01-2026"):
        shutil.copy(FIX / f"MCR_MUE_PractitionerServices_Eff_{name}.csv", d / "ncci" / "mue")
    shutil.copy(FIX / "fee_schedule_test.csv", d / "fees")
    return Engine(ruleset=load_ruleset(d))


def run(engine: Engine, *visits: dict[str, Any]) -> list[list[Finding]]:
    """Check visits in order against one patient history (seq = position): as audit does."""
    history = PatientHistory()
    out = []
    for seq, data in enumerate(visits, start=1):
        v = model(data)
        out.append(engine.check(v, history, seq))
        history = engine.evaluate(v, NOW, history, seq).history or history
    return out


# --- add-on families: 97129/97130 (each test fails on the old engine) ------------------------


def test_97129_x3_for_40_minutes_is_misallocated(check: Any) -> None:
    # 40 min -> 3 units (Pub. 100-04 Ch. 5 sec. 20.2 chart); 97129 is "initial 15 minutes":
    # 1 unit a day, the rest on 97130 "each additional 15 minutes". Old engine: clean.
    findings = check(timed_visit(("97129", 3, 40)))
    assert rule_ids(findings) == ["TIMED_UNITS_MISALLOCATED"]
    f = findings[0]
    assert f.cpt == "97129"
    assert f.expected["units_by_cpt"] == {"97129": 1, "97130": 2}


def test_97129_x1_plus_97130_x2_for_40_minutes_is_clean(check: Any) -> None:
    # The correct coding of the case above; the old engine raised a false MISALLOCATED.
    assert check(timed_visit(("97129", 1, 14), ("97130", 2, 26))) == []
    assert check(timed_visit(("97129", 1, 30), ("97130", 2, 10))) == []


def test_97130_without_97129_is_add_on_without_primary(check: Any) -> None:
    findings = check(timed_visit(("97130", 2, 30)))
    assert rule_ids(findings) == ["ADD_ON_CODE_WITHOUT_PRIMARY"]
    assert findings[0].cpt == "97130" and findings[0].expected == {"primary_codes": ["97129"]}


def test_97129_family_under_ama_is_one_service(check: Any) -> None:
    # The family's 40 minutes are one service: 3 units by the CPT midpoint rule.
    assert check(timed_visit(("97129", 1, 20), ("97130", 2, 20), kind="commercial")) == []
    assert rule_ids(check(timed_visit(("97129", 3, 40), kind="commercial"))) == [
        "TIMED_UNITS_MISALLOCATED"
    ]
    over = check(timed_visit(("97129", 1, 20), ("97130", 3, 20), kind="commercial"))
    assert rule_ids(over) == ["TIMED_UNITS_EXCEED_MINUTES"]
    assert over[0].cpt == "97129" and over[0].expected["units"] == 3


def test_97129_family_pooled_with_other_codes_under_cms(check: Any) -> None:
    # Pool: 97110 20 + family (97129 10 + 97130 12 = 22) = 42 -> 3 units; full blocks:
    # 97110 1, family 1; leftovers 5 and 7 -> the family takes the third unit.
    assert check(timed_visit(("97110", 1, 20), ("97129", 1, 10), ("97130", 1, 12))) == []
    findings = check(timed_visit(("97110", 2, 20), ("97129", 1, 10), ("97130", 0, 12)))
    assert rule_ids(findings) == ["TIMED_UNITS_MISALLOCATED"]
    assert findings[0].expected["allowed_allocations"] == [{"97110": 1, "97129": 1, "97130": 1}]


def test_97129_at_most_one_unit_per_day_across_visits() -> None:
    engine = Engine()
    morning = other_visit("V-AM", [line("1", "97129", 1, 15)])
    afternoon_ok = other_visit("V-PM", [line("1", "97130", 1, 15)])
    afternoon_bad = other_visit("V-PM2", [line("1", "97129", 1, 15)])
    first, ok = run(engine, morning, afternoon_ok)
    assert first == [] and ok == []  # 97130 later that day has its primary
    _, bad = run(engine, morning, afternoon_bad)
    assert rule_ids(bad) == ["TIMED_UNITS_MISALLOCATED"]
    assert bad[0].observed["primary_units_earlier_same_day"] == 1
    assert bad[0].expected["units_by_cpt"] == {"97129": 0, "97130": 1}


def test_97550_unit_is_30_minutes_and_judged_alone_not_pooled(check: Any) -> None:
    # 97550 "initial 30 minutes" + 97551 "each additional 15 minutes": CPT time rule per
    # unit length: 16 min -> 1 unit, 38 min -> 2 (30 + 8). Not in the 15-minute pool.
    assert check(timed_visit(("97550", 1, 16))) == []
    assert rule_ids(check(timed_visit(("97550", 1, 15)))) == ["TIMED_UNITS_EXCEED_MINUTES"]
    assert check(timed_visit(("97550", 1, 30), ("97551", 1, 8))) == []
    below = check(timed_visit(("97550", 1, 37), ("97551", 0, 8)))
    assert rule_ids(below) == ["TIMED_UNITS_BELOW_MINUTES"] and below[0].expected["units"] == 2
    # Pooled 97110 is judged on its own minutes, not with 97550's 30.
    assert check(timed_visit(("97110", 1, 8), ("97550", 1, 30))) == []


# --- catalog: G0283, 97113, 97124; unknown codes ---------------------------------------------


@pytest.mark.parametrize(("code", "timed"), [("G0283", False), ("97113", True), ("97124", True)])
def test_daily_codes_are_in_the_catalog(engine: Engine, code: str, timed: bool) -> None:
    entry = engine.catalog.get(code)
    assert entry is not None and entry.timed is timed


def test_misallocated_visit_with_a_g0283_line_is_still_checked(check: Any) -> None:
    # CMS sec. 20.2 example 3 billed 97110 x3 + 97140 x0, plus unattended e-stim (G0283,
    # untimed). Old engine: G0283 unknown -> only UNKNOWN_CODE.
    data = timed_visit(("97110", 3, 33), ("97140", 0, 7))
    data["services"].append(line("3", "G0283", 1))
    findings = check(data)
    assert rule_ids(findings) == ["TIMED_UNITS_MISALLOCATED"]
    assert findings[0].expected["allowed_allocations"] == [{"97110": 2, "97140": 1}]


def test_unknown_code_keeps_the_known_lines_split_check(check: Any) -> None:
    data = timed_visit(("97110", 3, 33), ("97140", 0, 7))
    data["services"].append(line("3", "97999", 1, 10))
    data["total_timed_minutes"] = 50
    data["total_treatment_minutes"] = 55
    assert rule_ids(check(data)) == ["UNKNOWN_CODE", "TIMED_UNITS_MISALLOCATED"]


def test_unknown_code_total_only_bounds(check: Any) -> None:
    # Only the documented total (50) is known and an unknown line has 10 minutes: the known
    # lines own between 40 (if the unknown code is timed) and 50 (if not) minutes.
    data = payload(
        services=[line("1", "97110", 4), line("2", "97999", 1, 10)],
        total_timed_minutes=50,
        total_treatment_minutes=60,
    )
    # 4 units > what 50 minutes support (3): certainly over.
    assert "TIMED_UNITS_EXCEED_MINUTES" in rule_ids(check(data))
    data["services"][0]["units"] = 2  # 2 < what 40 minutes support (3): certainly under
    assert "TIMED_UNITS_BELOW_MINUTES" in rule_ids(check(data))
    data["services"][0]["units"] = 3  # within both bounds: only the info and the unknown code
    assert rule_ids(check(data)) == ["UNKNOWN_CODE", "TIMED_MINUTES_MISSING"]


# --- TIMED_MINUTES_MISSING severity -------------------------------------------------------


def test_total_only_note_is_info_under_cms_and_warning_under_ama(check: Any) -> None:
    # Pub. 100-02, Ch. 15, sec. 220.3: Medicare requires the total timed minutes, not minutes
    # per code: a note with only the total is compliant (old engine: a warning per line).
    data = payload(
        services=[line("1", "97110", 2), line("2", "97140", 1)],
        total_timed_minutes=40,
        total_treatment_minutes=45,
    )
    findings = check(data)
    assert rule_ids(findings) == ["TIMED_MINUTES_MISSING", "TIMED_MINUTES_MISSING"]
    assert {f.severity.value for f in findings} == {"info"}
    data["payer"] = {"payer_id": "C", "kind": "commercial"}
    assert {f.severity.value for f in check(data)} == {"warning"}
    del data["total_timed_minutes"]
    data["payer"] = {"payer_id": "M", "kind": "medicare"}
    sev = {f.rule_id.value: f.severity.value for f in check(data)}
    assert sev["TIMED_MINUTES_MISSING"] == "warning"  # no total: nothing audits the units


# --- NCCI PTP ------------------------------------------------------------------------------


def _eval_and_test(test_code: str, modifiers: list[str] | None = None) -> dict[str, Any]:
    data = timed_visit((test_code, 1, 15))
    data["services"][0]["modifiers"] = modifiers or ["GP"]
    data["services"].append(line("2", "97161", 1))
    data["total_treatment_minutes"] = 60
    data["documents"] = [
        {
            "doc_id": "D",
            "kind": "written_report",
            "cpt": test_code,
            "signed_at": "2026-03-02T16:00:00Z",
        }
    ]
    return data


@pytest.mark.parametrize("code", ["97750", "97755", "97763"])
def test_ncci_p8_shipped_without_any_ncci_file(check: Any, code: str) -> None:
    # NCCI Policy Manual Ch. XI sec. P.8: not separately reportable with 97161-97168.
    findings = [f for f in check(_eval_and_test(code)) if f.rule_id == "NCCI_PTP_CONFLICT"]
    assert len(findings) == 1
    f = findings[0]
    assert f.cpt == code and f.expected["column1"] == ["97161"]
    assert f.expected["modifier_indicators"] == [0] and f.expected["bypass_modifiers"] == []
    assert "sec. P.8" in f.reference
    # Indicator 0: no modifier bypasses it.
    assert rule_ids(check(_eval_and_test(code, ["GP", "59"]))).count("NCCI_PTP_CONFLICT") == 1


def test_a_loaded_cms_file_row_decides_its_pair(ncci_engine: Engine) -> None:
    # The fixture has 97161/97750 with indicator 1: 59 now bypasses it.
    data = _eval_and_test("97750", ["GP", "59"])
    assert "NCCI_PTP_CONFLICT" not in rule_ids(ncci_engine.check(model(data)))
    data = _eval_and_test("97750")
    assert "NCCI_PTP_CONFLICT" in rule_ids(ncci_engine.check(model(data)))


def test_ncci_pair_in_one_visit_and_bypass_modifiers(ncci_engine: Engine) -> None:
    data = timed_visit(("97140", 1, 15), ("97530", 1, 15))
    findings = [f for f in ncci_engine.check(model(data)) if f.rule_id == "NCCI_PTP_CONFLICT"]
    assert len(findings) == 1 and findings[0].cpt == "97530"
    assert findings[0].line_ids == ("1", "2")
    assert findings[0].amount_at_risk == Decimal("35.10")  # the column-2 line (fee file)
    for mod in ("59", "XE", "XS", "XP", "XU"):
        data["services"][1]["modifiers"] = ["GP", mod]
        assert "NCCI_PTP_CONFLICT" not in rule_ids(ncci_engine.check(model(data))), mod
    data["services"][1]["modifiers"] = ["GP"]
    data["services"][0]["modifiers"] = ["GP", "59"]  # on column 1: does not bypass
    assert "NCCI_PTP_CONFLICT" in rule_ids(ncci_engine.check(model(data)))


def test_ncci_pair_split_across_visits_same_npi_only(ncci_engine: Engine) -> None:
    a = other_visit("V-A", [line("1", "97140", 1, 15)])
    b = other_visit("V-B", [line("1", "97530", 1, 15)])
    _, second = run(ncci_engine, a, b)
    assert rule_ids(second) == ["NCCI_PTP_CONFLICT"]
    assert second[0].observed["other_visits"] == ["V-A"]
    # Column 2 first, column 1 later: the later visit completes the pair.
    _, second = run(ncci_engine, b, a)
    assert rule_ids(second) == ["NCCI_PTP_CONFLICT"] and second[0].cpt == "97530"
    # Another rendering NPI, or another date: no edit.
    b_other = other_visit("V-B", [line("1", "97530", 1, 15)], npi="1245319599")
    assert run(ncci_engine, a, b_other)[1] == []
    b_later = other_visit("V-B", [line("1", "97530", 1, 15)], dos="2026-03-03")
    assert run(ncci_engine, a, b_later)[1] == []


def test_one_alert_per_column2_line_against_two_earlier_column1_codes() -> None:
    # 97750 against 97161 (morning) and 97164 (noon), both P.8 column 1: one alert, distinct id.
    engine = Engine()
    am = other_visit("V-AM", [line("1", "97161", 1)])
    noon = other_visit("V-NOON", [line("1", "97164", 1)])
    pm = other_visit("V-PM", [line("1", "97750", 1, 15)])
    pm["documents"] = [
        {
            "doc_id": "D",
            "kind": "written_report",
            "cpt": "97750",
            "signed_at": "2026-03-02T21:00:00Z",
        }
    ]
    last = [f for f in run(engine, am, noon, pm)[2] if f.rule_id == "NCCI_PTP_CONFLICT"]
    assert len(last) == 1 and last[0].expected["column1"] == ["97161", "97164"]
    assert last[0].observed["other_visits"] == ["V-AM", "V-NOON"]


def test_ncci_window_on_the_date_of_service(ncci_engine: Engine) -> None:
    def pair(dos: str) -> list[str]:
        data = timed_visit(("97110", 1, 15), date_of_service=dos, occurred_at=f"{dos}T20:00:00Z")
        data["services"].append(line("2", "97164", 1))
        data["total_treatment_minutes"] = 50
        data["services"][1]["modifiers"] = ["GP", "59"]
        return rule_ids(ncci_engine.check(model(data)))

    assert "NCCI_PTP_CONFLICT" not in pair("2025-12-31")  # indicator 1 then: 59 bypasses
    assert "NCCI_PTP_CONFLICT" in pair("2026-01-01")  # indicator 0 from 2026


# --- MUE -----------------------------------------------------------------------------------


def test_mue_line_edit_per_line(ncci_engine: Engine) -> None:
    # Fixture: 97140 MUE 2, MAI 1 (per claim line).
    data = timed_visit(("97140", 3, 45))
    f = [x for x in ncci_engine.check(model(data)) if x.rule_id == "MUE_EXCEEDED"]
    assert len(f) == 1 and f[0].expected == {"mue": 2, "adjudication_indicator": 1}
    assert f[0].amount_at_risk == 3 * Decimal("28.50")  # the whole line is denied
    data = timed_visit(("97140", 2, 30), ("97140", 1, 15))  # two lines of 2 and 1: per line
    assert "MUE_EXCEEDED" not in rule_ids(ncci_engine.check(model(data)))


def test_mue_date_of_service_edit_sums_across_visits_same_npi(ncci_engine: Engine) -> None:
    # Fixture: 97110 MUE 4 (MAI 3) in the January file, 6 from April.
    a = other_visit("V-A", [line("1", "97110", 3, 45)])
    b = other_visit("V-B", [line("1", "97110", 2, 30)])
    first, second = run(ncci_engine, a, b)
    assert "MUE_EXCEEDED" not in rule_ids(first)
    mue = [f for f in second if f.rule_id == "MUE_EXCEEDED"]
    assert len(mue) == 1 and mue[0].observed == {"units": 5, "units_earlier_same_day": 3}
    b_other_npi = other_visit("V-B", [line("1", "97110", 2, 30)], npi="1245319599")
    assert "MUE_EXCEEDED" not in rule_ids(run(ncci_engine, a, b_other_npi)[1])
    april = [
        other_visit(v, [line("1", "97110", u, 15 * u)], dos="2026-04-02")
        for v, u in (("V-A", 3), ("V-B", 2))
    ]
    assert "MUE_EXCEEDED" not in rule_ids(run(ncci_engine, *april)[1])  # 5 <= 6


def test_mue_no_row_no_check(ncci_engine: Engine) -> None:
    assert "MUE_EXCEEDED" not in rule_ids(ncci_engine.check(model(timed_visit(("97112", 8, 120)))))


# --- EVALUATION_DUPLICATE --------------------------------------------------------------------


def _evals(*codes: str, **kw: Any) -> dict[str, Any]:
    return payload(
        services=[line(str(i), c, 1) for i, c in enumerate(codes, start=1)],
        total_timed_minutes=...,
        total_treatment_minutes=60,
        **kw,
    )


def test_evaluation_duplicate_p1(check: Any) -> None:
    # NCCI Ch. XI sec. P.1: one PT and one OT evaluation/re-evaluation per date of service.
    assert rule_ids(check(_evals("97161", "97164"))) == ["EVALUATION_DUPLICATE"]
    assert check(_evals("97161")) == []
    # One PT and one OT evaluation the same day: each discipline has its one.
    both = _evals("97161", "97165")
    both["services"][1]["modifiers"] = ["GO"]
    assert "EVALUATION_DUPLICATE" not in rule_ids(check(both))
    # SLP evaluations are not limited by P.1 (92523 + 92610 the same day is common).
    slp = _evals("92523", "92610", discipline="SLP")
    for s in slp["services"]:
        s["modifiers"] = ["GN"]
    assert check(slp) == []


def test_evaluation_duplicate_across_visits_any_npi() -> None:
    engine = Engine()
    a = other_visit("V-A", [line("1", "97163", 1)])
    b = other_visit("V-B", [line("1", "97164", 1)], npi="1245319599")
    first, second = run(engine, a, b)
    assert first == [] and rule_ids(second) == ["EVALUATION_DUPLICATE"]
    assert second[0].observed["earlier_same_day"] == ["97163"]


# --- CQ / CO ---------------------------------------------------------------------------------


def _assisted(minutes: int, assistant: int | None, mods: list[str], **kw: Any) -> dict[str, Any]:
    data = timed_visit(("97110", 0, minutes), **kw)
    s = data["services"][0]
    s["units"] = max(1, (minutes + 7) // 15)
    s["modifiers"] = mods
    if assistant is not None:
        s["assistant_minutes"] = assistant
    return data


def test_cq_de_minimis_10_percent(check: Any) -> None:
    # CMS: CQ applies when the PTA's separately furnished minutes exceed 10% of the service.
    assert check(_assisted(20, 2, ["GP"])) == []  # exactly 10%: not more than 10%
    findings = check(_assisted(20, 3, ["GP"]))
    assert rule_ids(findings) == ["ASSISTANT_MODIFIER_MISSING"]
    assert findings[0].expected["modifier"] == "CQ"
    assert check(_assisted(20, 3, ["GP", "CQ"])) == []


def test_cms_cq_billing_example_97110_shared_by_pt_and_pta(check: Any) -> None:
    # CMS billing example (as quoted from CMS's CQ/CO examples page): PTA 23 min and PT
    # 13 min of 97110, PT 30 min of 97140 = 66 min, 4 units. The PTA's 23 of 97110's 36
    # minutes exceed 10%: the 97110 line needs CQ; 97140 (PT only) does not.
    data = timed_visit(("97110", 2, 36), ("97140", 2, 30))
    data["services"][0]["assistant_minutes"] = 23
    findings = check(data)
    assert rule_ids(findings) == ["ASSISTANT_MODIFIER_MISSING"]
    assert findings[0].cpt == "97110"
    data["services"][0]["modifiers"] = ["GP", "CQ"]
    assert check(data) == []


def test_cq_whole_by_assistant_co_for_ot_and_scope(check: Any) -> None:
    data = _assisted(30, None, ["GP"])
    data["services"][0]["furnished_by"] = "PTA"
    assert rule_ids(check(data)) == ["ASSISTANT_MODIFIER_MISSING"]
    ot = _assisted(30, 10, ["GO"], discipline="OT")
    f = check(ot)
    assert rule_ids(f) == ["ASSISTANT_MODIFIER_MISSING"] and f[0].expected["modifier"] == "CO"
    # Commercial payer (policy does not follow Medicare), or before 2020-01-01: not required.
    assert check(_assisted(30, 10, ["GP"], kind="commercial")) == []
    old = _assisted(
        30, 10, ["GP"], date_of_service="2019-12-31", occurred_at="2019-12-31T20:00:00Z"
    )
    assert check(old) == []


def test_cq_without_gp_is_unpaired(check: Any) -> None:
    data = _assisted(30, 10, ["CQ"], kind="commercial")
    assert rule_ids(check(data)) == ["ASSISTANT_MODIFIER_UNPAIRED"]
    data = _assisted(30, 10, ["CO", "GP"], kind="commercial")
    assert rule_ids(check(data)) == ["ASSISTANT_MODIFIER_UNPAIRED"]


# --- amount at risk --------------------------------------------------------------------------


def test_amount_at_risk_from_allowed_amount_and_excess_share(check: Any) -> None:
    data = timed_visit(("97110", 4, 33), ("97140", 1, 7))  # 40 min -> 3 units; 5 billed
    data["services"][0]["allowed_amount"] = "120.00"  # 30.00 a unit
    data["services"][1]["allowed_amount"] = "28.00"
    [f] = check(data)
    assert f.rule_id == "TIMED_UNITS_EXCEED_MINUTES"
    # 2 excess units at the lowest per-unit amount among the lines (28.00).
    assert f.amount_at_risk == Decimal("56.00")
    data["services"][1].pop("allowed_amount")
    assert check(data)[0].amount_at_risk is None  # 97140's amount unknown (no fee file)


def test_amount_at_risk_in_the_alert_is_a_decimal_string(engine: Engine) -> None:
    data = timed_visit(("97130", 2, 30))
    data["services"][0]["allowed_amount"] = "41.333"
    [alert] = engine.evaluate(model(data), NOW).alerts
    body = alert.model()
    assert body.amount_at_risk == "41.33"  # the whole add-on line, to the cent
    assert body.ruleset_version == engine.ruleset_version
