"""RENDERING_NPI_INVALID (EVENTS.md "Other additive rule ids": "error: the NPI fails its check
digit, Luhn with prefix 80840"). NPIs are published values (tests/unit/compliance/test_npi.py cites them):
1234567893 is CMS's worked example (valid), 1234567890 the same identifier with another check
digit (invalid)."""

from __future__ import annotations

from datetime import UTC, datetime

from compliance import Engine
from tests.factories import line, model, payload, timed_visit
from tests.unit.conftest import rule_ids

CMS_EXAMPLE = "1234567893"
WRONG_CHECK_DIGIT = "1234567890"


def visit_with_npi(npi: str) -> dict[str, object]:
    data = timed_visit(("97110", 2, 33), ("97140", 1, 7))  # CMS sec. 20.2 example 3: clean
    data["rendering_provider"] = {"npi": npi, "credential": "PT"}
    return data


def test_cms_example_npi_is_clean(engine: Engine) -> None:
    assert rule_ids(engine.check(model(visit_with_npi(CMS_EXAMPLE)))) == []


def test_wrong_check_digit_is_an_error_on_every_billed_line(engine: Engine) -> None:
    data = visit_with_npi(WRONG_CHECK_DIGIT)
    data["services"][0]["allowed_amount"] = "60.00"
    data["services"][1]["allowed_amount"] = "25.50"
    (finding,) = engine.check(model(data))
    assert finding.rule_id.value == "RENDERING_NPI_INVALID"
    assert finding.severity.value == "error"
    assert finding.line_ids == ("1", "2")
    # The claim is rejected whole: both billed lines are at risk.
    assert str(finding.amount_at_risk) == "85.50"
    assert finding.expected == {"check_digit": 3}  # CMS: 123456789 -> 3
    assert finding.observed == {"npi": WRONG_CHECK_DIGIT, "check_digit": 0}
    assert "NPI Check Digit" in finding.reference
    assert "Correct the rendering provider's NPI" in finding.message


def test_the_alert_is_a_valid_contract_event(engine: Engine) -> None:
    outcome = engine.evaluate(model(visit_with_npi(WRONG_CHECK_DIGIT)), datetime.now(UTC))
    (alert,) = outcome.alerts
    body = alert.model()
    assert (body.rule_id, body.severity.value, body.line_ids) == (
        "RENDERING_NPI_INVALID",
        "error",
        ["1", "2"],
    )
    assert outcome.checked.status.value == "flagged"


def test_a_visit_with_nothing_billed_sends_no_claim(engine: Engine) -> None:
    data = payload(
        services=[line("1", "97110", 0, 8)],
        total_timed_minutes=8,
        total_treatment_minutes=10,
        rendering_provider={"npi": WRONG_CHECK_DIGIT, "credential": "PT"},
    )
    assert "RENDERING_NPI_INVALID" not in rule_ids(engine.check(model(data)))


def test_not_judged_when_the_charges_never_arrived(engine: Engine) -> None:
    # ehr/join.py's placeholder NPI of a visit assembled without charges fails the check digit
    # (0000000000: CMS constant 24 alone, check digit 6); the join's visit has no rendering NPI.
    data = payload(
        services=[],
        payer={"payer_id": "UNKNOWN", "kind": "other"},
        rendering_provider={"npi": "0000000000", "credential": "OTHER"},
        parts_missing=["charges"],
    )
    assert rule_ids(engine.check(model(data))) == ["CHARGES_NOT_RECEIVED"]
    # Even with a line on it, the NPI of a visit without charges is not the claim's.
    data["services"] = [line("1", "97110", 1, 15)]
    data.update(total_timed_minutes=15, total_treatment_minutes=20)
    assert "RENDERING_NPI_INVALID" not in rule_ids(engine.check(model(data)))


def test_documentation_missing_still_checks_the_charges_npi(engine: Engine) -> None:
    data = visit_with_npi(WRONG_CHECK_DIGIT)
    data["parts_missing"] = ["documentation"]
    assert "RENDERING_NPI_INVALID" in rule_ids(engine.check(model(data)))
