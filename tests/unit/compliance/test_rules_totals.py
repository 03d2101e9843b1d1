"""TOTAL_TIMED_MINUTES_MISMATCH and TREATMENT_TIME_INCONSISTENT (CMS Pub. 100-02, Ch. 15,
sec. 220.3: the note documents total timed minutes and total treatment time, and "the billing
and the total timed code treatment minutes must be consistent")."""

from __future__ import annotations

from typing import Any

from tests.factories import line, payload, timed_visit
from tests.unit.conftest import rule_ids


def test_total_timed_minutes_absent_with_timed_codes_billed(check: Any) -> None:
    data = payload(
        services=[line("1", "97110", 2)], total_timed_minutes=..., total_treatment_minutes=30
    )
    findings = check(data)
    assert "TOTAL_TIMED_MINUTES_MISMATCH" in rule_ids(findings)
    f = next(f for f in findings if f.rule_id == "TOTAL_TIMED_MINUTES_MISMATCH")
    assert f.observed == {"total_timed_minutes": None} and f.line_ids == ("1",)


def test_total_absent_but_only_unbilled_timed_lines(check: Any) -> None:
    data = payload(
        services=[line("1", "97110", 0, 5)], total_timed_minutes=..., total_treatment_minutes=5
    )
    assert check(data) == []


def test_line_minutes_disagree_with_total(check: Any) -> None:
    data = timed_visit(("97110", 2, 33), ("97140", 1, 7))
    data["total_timed_minutes"] = 45
    findings = check(data)
    assert rule_ids(findings) == ["TOTAL_TIMED_MINUTES_MISMATCH"]
    assert findings[0].expected == {"total_timed_minutes": 40}
    assert findings[0].observed == {"total_timed_minutes": 45, "sum_of_line_minutes": 40}


def test_no_mismatch_when_a_line_has_no_minutes(check: Any) -> None:
    data = payload(
        services=[line("1", "97110", 2, 30), line("2", "97140", 1)],
        total_timed_minutes=40,
        total_treatment_minutes=40,
    )
    assert "TOTAL_TIMED_MINUTES_MISMATCH" not in rule_ids(check(data))


def test_timed_total_with_no_timed_lines(check: Any) -> None:
    data = payload(
        services=[line("1", "97161", 1)], total_timed_minutes=20, total_treatment_minutes=45
    )
    assert rule_ids(check(data)) == ["TOTAL_TIMED_MINUTES_MISMATCH"]


def test_treatment_time_absent(check: Any) -> None:
    data = timed_visit(("97110", 2, 30))
    del data["total_treatment_minutes"]
    findings = check(data)
    assert rule_ids(findings) == ["TREATMENT_TIME_INCONSISTENT"]
    assert findings[0].line_ids == () and findings[0].cpt is None


def test_treatment_time_below_timed_minutes(check: Any) -> None:
    data = timed_visit(("97110", 2, 30), extra_treatment=-1)
    findings = check(data)
    assert rule_ids(findings) == ["TREATMENT_TIME_INCONSISTENT"]
    assert findings[0].observed == {"total_treatment_minutes": 29, "total_timed_minutes": 30}


def test_treatment_time_equal_to_timed_minutes_is_fine(check: Any) -> None:
    assert check(timed_visit(("97110", 2, 30), extra_treatment=0)) == []


def test_untimed_only_visit_still_needs_treatment_time(check: Any) -> None:
    data = payload(
        services=[line("1", "97161", 1)], total_timed_minutes=..., total_treatment_minutes=...
    )
    assert rule_ids(check(data)) == ["TREATMENT_TIME_INCONSISTENT"]


def test_visit_with_nothing_billed_has_no_findings(check: Any) -> None:
    data = payload(
        services=[line("1", "97110", 0)], total_timed_minutes=..., total_treatment_minutes=...
    )
    assert check(data) == []
    assert check(payload(services=[])) == []
