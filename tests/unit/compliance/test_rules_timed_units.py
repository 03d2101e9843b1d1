"""TIMED_UNITS_* and TIMED_MINUTES_MISSING.

CMS: CMS Pub. 100-04, Ch. 5, sec. 20.2 (8-minute rule, worked examples) and Pub. 100-02, Ch. 15,
sec. 220.3 (per-line minutes voluntary). AMA: CPT midpoint rule, each code alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import line, payload, timed_visit
from tests.unit.conftest import rule_ids

CMS_EXAMPLES = {
    # name: (lines as (cpt, units CMS bills, minutes))
    "example_1": [("97112", 2, 24), ("97110", 1, 23)],
    "example_2": [("97112", 2, 20), ("97110", 1, 20)],
    "example_2_other_choice": [("97112", 1, 20), ("97110", 2, 20)],
    "example_3": [("97110", 2, 33), ("97140", 1, 7)],
    "example_4": [("97110", 1, 18), ("97140", 1, 13), ("97116", 1, 10), ("97035", 0, 8)],
    "example_5": [("97112", 1, 7), ("97110", 0, 7), ("97140", 0, 7)],
    "example_5_other_choice": [("97112", 0, 7), ("97110", 0, 7), ("97140", 1, 7)],
    "single_code_60_minutes": [("97530", 4, 60)],
}


@pytest.mark.parametrize("name", sorted(CMS_EXAMPLES))
def test_cms_sec_20_2_worked_examples_billed_as_cms_says_are_clean(check: Any, name: str) -> None:
    assert check(timed_visit(*CMS_EXAMPLES[name])) == []


def test_cms_sec_20_2_example_3_all_units_on_one_code_is_misallocated(check: Any) -> None:
    findings = check(timed_visit(("97110", 3, 33), ("97140", 0, 7)))
    assert rule_ids(findings) == ["TIMED_UNITS_MISALLOCATED"]
    f = findings[0]
    assert f.cpt is None and f.line_ids == ("1", "2")
    assert f.expected["allowed_allocations"] == [{"97110": 2, "97140": 1}]
    assert f.observed["units_by_cpt"] == {"97110": 3, "97140": 0}
    assert f.reference == "CMS Pub. 100-04, Ch. 5, sec. 20.2"


def test_cms_sec_20_2_example_2_three_units_on_one_code_is_misallocated(check: Any) -> None:
    findings = check(timed_visit(("97112", 3, 20), ("97110", 0, 20)))
    assert rule_ids(findings) == ["TIMED_UNITS_MISALLOCATED"]
    assert findings[0].expected["allowed_allocations_count"] == 2
    assert {"97110": 2, "97112": 1} in findings[0].expected["allowed_allocations"]


def test_cms_sec_20_2_example_1_units_exceed(check: Any) -> None:
    findings = check(timed_visit(("97112", 2, 24), ("97110", 2, 23)))
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES"]
    f = findings[0]
    assert f.expected == {
        "total_units": 3,
        "unit_rule": "cms_8_minute",
        "minutes_source": "total_timed_minutes",
    }
    assert f.observed == {"total_units": 4, "total_timed_minutes": 47}
    assert f.cpt is None


def test_cms_units_below_minutes_is_a_warning(check: Any) -> None:
    findings = check(timed_visit(("97110", 2, 33), ("97140", 0, 7)))
    assert rule_ids(findings) == ["TIMED_UNITS_BELOW_MINUTES"]
    assert findings[0].severity.value == "warning"
    assert findings[0].expected["total_units"] == 3


def test_cms_contract_example_4_units_for_40_minutes(check: Any) -> None:
    findings = check(timed_visit(("97110", 3, 33), ("97140", 1, 7)))
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES"]
    assert findings[0].message == (
        "4 timed units billed; 40 documented timed minutes support 3 under the CMS 8-minute rule."
    )


def test_cms_zero_minute_line_billed(check: Any) -> None:
    findings = check(timed_visit(("97110", 3, 38), ("97140", 1, 0)))
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES"]


def test_cms_under_8_minutes_total_billed_one_unit(check: Any) -> None:
    findings = check(timed_visit(("97110", 1, 7)))
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES"]
    assert findings[0].expected["total_units"] == 0


def test_cms_unbilled_line_minutes_count_toward_pool(check: Any) -> None:
    # Example 4's ultrasound: documented (units 0), its 8 minutes are in the 49.
    data = timed_visit(("97110", 1, 18), ("97140", 1, 13), ("97116", 1, 10), ("97035", 0, 8))
    assert data["total_timed_minutes"] == 49
    assert check(data) == []


def test_cms_total_only_checks_total_and_warns_missing_minutes(check: Any) -> None:
    # Pub. 100-02, Ch. 15, sec. 220.3: only the total timed minutes are required.
    data = payload(
        services=[line("1", "97110", 2), line("2", "97140", 1)],
        total_timed_minutes=40,
        total_treatment_minutes=45,
    )
    findings = check(data)
    assert rule_ids(findings) == ["TIMED_MINUTES_MISSING", "TIMED_MINUTES_MISSING"]
    assert [f.line_ids for f in findings] == [("1",), ("2",)]
    assert all(f.cpt in {"97110", "97140"} for f in findings)


def test_cms_total_only_overbilled(check: Any) -> None:
    data = payload(
        services=[line("1", "97110", 3), line("2", "97140", 1)],
        total_timed_minutes=40,
        total_treatment_minutes=45,
    )
    assert rule_ids(check(data)) == [
        "TIMED_MINUTES_MISSING",
        "TIMED_MINUTES_MISSING",
        "TIMED_UNITS_EXCEED_MINUTES",
    ]


def test_cms_partial_line_minutes_checks_total_not_split(check: Any) -> None:
    # 33 minutes on one line, the other line's minutes undocumented; total 40 supports 3.
    data = payload(
        services=[line("1", "97110", 3, 33), line("2", "97140", 0)],
        total_timed_minutes=40,
        total_treatment_minutes=45,
    )
    assert check(data) == []  # would be misallocated if 97140's 7 minutes were known


def test_cms_total_absent_uses_sum_of_lines(check: Any) -> None:
    data = timed_visit(("97110", 4, 33), ("97140", 1, 7))
    del data["total_timed_minutes"]
    findings = check(data)
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES", "TOTAL_TIMED_MINUTES_MISMATCH"]
    assert findings[0].expected["minutes_source"] == "sum_of_line_minutes"
    assert findings[0].expected["total_units"] == 3


def test_untimed_codes_mixed_with_timed_are_not_pooled(check: Any) -> None:
    # 97161 (PT evaluation) is service-based: its minutes are not timed minutes.
    data = timed_visit(("97110", 2, 23))
    data["services"].append(line("9", "97161", 1, 40))
    data["total_treatment_minutes"] = 63
    assert check(data) == []


def test_cms_unknown_code_disables_only_its_own_line(check: Any) -> None:
    # EVENTS.md "v1 additions": an unknown code disables only the checks of its own line; the
    # known lines are still checked, their pooled minutes being the known timed lines' minutes.
    # (The old engine skipped BELOW for the whole visit: this raised only UNKNOWN_CODE.)
    data = timed_visit(("97110", 1, 23))  # 23 min support 2 (sec. 20.2 chart); 1 billed
    data["services"].append(line("9", "97999", 1, None))
    findings = check(data)
    assert rule_ids(findings) == ["UNKNOWN_CODE", "TIMED_UNITS_BELOW_MINUTES"]
    assert findings[1].expected["total_units"] == 2 and findings[1].line_ids == ("1",)
    data = timed_visit(("97110", 3, 23))
    data["services"].append(line("9", "97999", 1, None))
    assert rule_ids(check(data)) == ["UNKNOWN_CODE", "TIMED_UNITS_EXCEED_MINUTES"]


# --- AMA/CPT midpoint rule: each code alone ---------------------------------------------------


def test_ama_7_plus_7_minutes_bill_nothing(check: Any) -> None:
    findings = check(timed_visit(("97110", 1, 7), ("97140", 0, 7), kind="commercial"))
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES"]
    f = findings[0]
    assert f.cpt == "97110" and f.line_ids == ("1",)
    assert f.expected == {"units": 0, "total_units": 0, "unit_rule": "ama_midpoint"}
    assert f.observed == {"units": 1, "minutes": 7, "total_units": 1}


def test_ama_cms_clean_example_3_is_flagged_per_code(check: Any) -> None:
    # CMS bills 97140 (7 min) because of pooling; AMA does not pool.
    findings = check(timed_visit(("97110", 2, 33), ("97140", 1, 7), kind="commercial"))
    assert rule_ids(findings) == ["TIMED_UNITS_EXCEED_MINUTES"]
    assert findings[0].cpt == "97140"
    assert findings[0].expected["total_units"] == 2


def test_ama_below_per_code(check: Any) -> None:
    findings = check(timed_visit(("97110", 1, 23), ("97140", 1, 8), kind="workers_comp"))
    assert rule_ids(findings) == ["TIMED_UNITS_BELOW_MINUTES"]
    assert findings[0].cpt == "97110" and findings[0].expected["units"] == 2


def test_ama_clean(check: Any) -> None:
    assert check(timed_visit(("97110", 2, 23), ("97140", 1, 8), kind="commercial")) == []


def test_ama_missing_minutes_warns_and_skips_that_code(check: Any) -> None:
    data = timed_visit(("97110", 5, 23), kind="commercial")
    data["services"].append(line("2", "97140", 3))
    findings = check(data)
    assert sorted(rule_ids(findings)) == ["TIMED_MINUTES_MISSING", "TIMED_UNITS_EXCEED_MINUTES"]
    assert {f.cpt for f in findings} == {"97140", "97110"}


def test_ama_same_code_on_two_lines_is_judged_as_one_code(check: Any) -> None:
    findings = check(timed_visit(("97110", 1, 4), ("97110", 0, 4), kind="commercial"))
    assert check(timed_visit(("97110", 1, 4), ("97110", 0, 4), kind="commercial")) == findings
    assert findings == []  # 8 minutes of 97110 in the day support one unit


def test_event_unit_rule_overrides_payer_policy(check: Any) -> None:
    data = timed_visit(("97110", 2, 33), ("97140", 1, 7), kind="commercial")
    data["payer"]["unit_rule"] = "cms_8_minute"
    assert check(data) == []
    data = timed_visit(("97110", 2, 33), ("97140", 1, 7), kind="medicare")
    data["payer"]["unit_rule"] = "ama_midpoint"
    assert rule_ids(check(data)) == ["TIMED_UNITS_EXCEED_MINUTES"]
