"""CHARGES_NOT_RECEIVED / DOCUMENTATION_NOT_RECEIVED (EVENTS.md "Other additive rule ids"): a visit
the EHR join emitted with one part says what is missing, not the consequences."""

from __future__ import annotations

from typing import Any

from compliance import Engine
from tests.factories import line, model, payload
from tests.unit.conftest import rule_ids


def charges_only(**extra: Any) -> dict[str, Any]:
    # What ehr/join.py assembles from a DFT alone: lines without minutes, no totals, no notes.
    data = payload(
        services=[line("1", "97110", 2), line("2", "97140", 1), line("3", "97750", 1)],
        documents=[],
        **extra,
    )
    data.pop("total_timed_minutes")
    data.pop("total_treatment_minutes")
    return data


def test_documentation_not_received_replaces_its_consequences(engine: Engine) -> None:
    without_marker = rule_ids(engine.check(model(charges_only())))
    # Judged as an ordinary visit, the missing note shows up as four different problems ...
    assert {
        "TOTAL_TIMED_MINUTES_MISMATCH",
        "TREATMENT_TIME_INCONSISTENT",
        "WRITTEN_REPORT_MISSING",
    } <= set(without_marker)
    # ... marked by the join, it is one: the note did not arrive.
    marked = engine.check(model(charges_only(parts_missing=["documentation"])))
    assert rule_ids(marked) == ["DOCUMENTATION_NOT_RECEIVED"]
    assert marked[0].line_ids == ("1", "2", "3")


def test_charges_not_received(engine: Engine) -> None:
    data = payload(
        services=[],
        payer={"payer_id": "UNKNOWN", "kind": "other"},
        rendering_provider={"npi": "0000000000", "credential": "OTHER"},
        parts_missing=["charges"],
    )
    assert rule_ids(engine.check(model(data))) == ["CHARGES_NOT_RECEIVED"]


def test_other_problems_of_the_charges_are_still_reported(engine: Engine) -> None:
    data = charges_only(parts_missing=["documentation"])
    data["services"][0]["modifiers"] = []  # Medicare: GP missing is a charge problem
    assert set(rule_ids(engine.check(model(data)))) == {
        "DOCUMENTATION_NOT_RECEIVED",
        "THERAPY_MODIFIER_MISSING",
    }
