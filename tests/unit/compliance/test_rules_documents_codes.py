"""WRITTEN_REPORT_MISSING (CPT descriptors of 97750/97755, "with written report"),
CODE_NOT_VALID_ON_DATE (CPT annual code changes: 2017 evaluations, 2018 orthotics/cognitive,
2020 cognitive), UNKNOWN_CODE, UNTIMED_CODE_MULTIPLE_UNITS (CMS Pub. 100-04, Ch. 5, sec. 20.2),
THERAPY_MODIFIER_MISSING (CMS Pub. 100-04, Ch. 5, sec. 20.1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import line, payload, timed_visit
from tests.unit.conftest import rule_ids


def report(cpt: str, signed: bool = True, kind: str = "written_report") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "doc_id": f"D-{cpt}",
        "kind": kind,
        "cpt": cpt,
        "author_credential": "PT",
    }
    if signed:
        doc["signed_at"] = "2026-03-02T16:00:00Z"
    return doc


@pytest.mark.parametrize("cpt", ["97750", "97755"])
def test_written_report_missing(check: Any, cpt: str) -> None:
    findings = check(timed_visit((cpt, 2, 30)))
    assert rule_ids(findings) == ["WRITTEN_REPORT_MISSING"]
    assert findings[0].cpt == cpt and findings[0].line_ids == ("1",)
    assert "no written report" in findings[0].message


@pytest.mark.parametrize("cpt", ["97750", "97755"])
def test_signed_written_report_for_the_code_is_clean(check: Any, cpt: str) -> None:
    assert check(timed_visit((cpt, 2, 30), documents=[report(cpt)])) == []


def test_unsigned_report_or_other_code_or_other_kind_does_not_count(check: Any) -> None:
    for docs in (
        [report("97750", signed=False)],
        [report("97755")],
        [report("97750", kind="evaluation")],
    ):
        findings = check(timed_visit(("97750", 2, 30), documents=docs))
        assert rule_ids(findings) == ["WRITTEN_REPORT_MISSING"], docs
    unsigned = check(timed_visit(("97750", 2, 30), documents=[report("97750", signed=False)]))
    assert "unsigned" in unsigned[0].message
    assert unsigned[0].observed == {"written_reports": 1, "signed": 0}


def test_unbilled_97750_needs_no_report(check: Any) -> None:
    assert check(timed_visit(("97750", 0, 5))) == []


def code_not_valid(check: Any, cpt: str, dos: str) -> list[Any]:
    """CODE_NOT_VALID_ON_DATE findings for one billed line of `cpt` on `dos`."""
    data = payload(
        date_of_service=dos,
        occurred_at=f"{dos}T20:00:00Z",
        services=[line("1", cpt, 1, 15)],
        total_timed_minutes=...,
        total_treatment_minutes=15,
    )
    return [f for f in check(data) if f.rule_id == "CODE_NOT_VALID_ON_DATE"]


@pytest.mark.parametrize(
    ("cpt", "dos", "valid", "replacements"),
    [
        ("97001", "2016-12-31", True, None),
        ("97001", "2017-01-01", False, ["97161", "97162", "97163"]),
        ("97002", "2017-01-01", False, ["97164"]),
        ("97003", "2017-01-01", False, ["97165", "97166", "97167"]),
        ("97004", "2017-01-01", False, ["97168"]),
        ("97161", "2016-12-31", False, []),
        ("97161", "2017-01-01", True, None),
        ("97168", "2017-01-01", True, None),
        ("97172", "2016-12-31", False, []),
        ("97762", "2017-12-31", True, None),
        ("97762", "2018-01-01", False, ["97763"]),
        ("97763", "2017-12-31", False, []),
        ("97763", "2018-01-01", True, None),
        ("97532", "2017-12-31", True, None),
        ("97532", "2018-06-01", False, ["97127"]),
        ("97532", "2020-01-01", False, ["97129", "97130"]),
        ("97127", "2019-12-31", True, None),
        ("97127", "2020-01-01", False, ["97129", "97130"]),
        ("97129", "2019-12-31", False, []),
        ("97129", "2020-01-01", True, None),
        ("97130", "2020-01-01", True, None),
    ],
)
def test_code_valid_on_both_sides_of_effective_dates(
    check: Any, cpt: str, dos: str, valid: bool, replacements: list[str] | None
) -> None:
    findings = code_not_valid(check, cpt, dos)
    if valid:
        assert findings == []
        return
    assert len(findings) == 1
    f = findings[0]
    assert f.cpt == cpt and f.expected["replacement_codes"] == replacements
    for code in replacements or []:
        assert code in f.message


def test_deleted_code_message_names_replacements(check: Any) -> None:
    data = payload(
        services=[line("1", "97001", 1)], total_timed_minutes=..., total_treatment_minutes=45
    )
    f = check(data)[0]
    assert f.message == (
        "97001 was deleted after 2016-12-31 (date of service 2026-03-02); "
        "report 97161 or 97162 or 97163 instead."
    )


def test_unknown_code_warning(check: Any) -> None:
    data = payload(
        services=[line("1", "97999", 1)], total_timed_minutes=..., total_treatment_minutes=30
    )
    findings = check(data)
    assert rule_ids(findings) == ["UNKNOWN_CODE"]
    assert findings[0].severity.value == "warning" and findings[0].cpt == "97999"


def test_untimed_code_multiple_units(check: Any) -> None:
    data = payload(
        services=[line("1", "97161", 2)], total_timed_minutes=..., total_treatment_minutes=45
    )
    findings = check(data)
    assert rule_ids(findings) == ["UNTIMED_CODE_MULTIPLE_UNITS"]
    assert findings[0].expected == {"units": 1} and findings[0].observed == {"units": 2}


def test_untimed_code_split_over_two_lines(check: Any) -> None:
    data = payload(
        services=[line("1", "97010", 1), line("2", "97010", 1)],
        total_timed_minutes=...,
        total_treatment_minutes=20,
    )
    findings = check(data)
    assert rule_ids(findings) == ["UNTIMED_CODE_MULTIPLE_UNITS"]
    assert findings[0].line_ids == ("1", "2")


def test_untimed_one_unit_and_unlisted_modality_are_fine(check: Any) -> None:
    data = payload(
        services=[line("1", "97150", 1), line("2", "97039", 3)],
        total_timed_minutes=...,
        total_treatment_minutes=45,
    )
    assert check(data) == []


@pytest.mark.parametrize(("discipline", "modifier"), [("PT", "GP"), ("OT", "GO"), ("SLP", "GN")])
def test_therapy_modifier_of_discipline_required_for_medicare(
    check: Any, discipline: str, modifier: str
) -> None:
    data = timed_visit(("97110", 2, 30), discipline=discipline)
    data["services"][0]["modifiers"] = [modifier]
    assert check(data) == []
    wrong = "GO" if modifier != "GO" else "GP"
    data["services"][0]["modifiers"] = [wrong, "59"]
    findings = check(data)
    assert rule_ids(findings) == ["THERAPY_MODIFIER_MISSING"]
    assert findings[0].expected == {"modifier": modifier}
    assert findings[0].observed == {"modifiers": [wrong, "59"]}


def test_therapy_modifier_policy_by_payer(check: Any) -> None:
    data = timed_visit(("97110", 2, 30), kind="commercial")
    data["services"][0]["modifiers"] = []
    assert check(data) == []  # commercial default: not required
    data = timed_visit(("97110", 2, 30), kind="medicare_advantage")
    data["services"][0]["modifiers"] = []
    assert rule_ids(check(data)) == ["THERAPY_MODIFIER_MISSING"]


def test_therapy_modifier_not_required_on_athletic_training_eval_or_unbilled(check: Any) -> None:
    data = payload(
        services=[line("1", "97169", 1, modifiers=[]), line("2", "97110", 0, 5, modifiers=[])],
        total_timed_minutes=5,
        total_treatment_minutes=45,
    )
    assert check(data) == []


def _boundaries() -> list[tuple[str, str, bool]]:
    from datetime import timedelta

    from compliance.catalog import load_catalog

    catalog = load_catalog()
    cases = []
    for code in catalog.codes():
        entry = catalog.get(code)
        assert entry is not None
        if entry.effective_from is not None:
            cases.append((code, str(entry.effective_from - timedelta(days=1)), False))
            cases.append((code, str(entry.effective_from), True))
        if entry.effective_to is not None:
            cases.append((code, str(entry.effective_to), True))
            cases.append((code, str(entry.effective_to + timedelta(days=1)), False))
    return cases


@pytest.mark.parametrize(("cpt", "dos", "valid"), _boundaries())
def test_every_effective_date_of_the_catalog_both_sides(
    check: Any, cpt: str, dos: str, valid: bool
) -> None:
    # The day before effective_from and the day after effective_to are invalid; the dates
    # themselves are valid (inclusive windows), for every dated row of the catalog.
    flagged = code_not_valid(check, cpt, dos)
    assert (flagged == []) is valid
