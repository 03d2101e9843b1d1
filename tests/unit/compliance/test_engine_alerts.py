"""Engine output: every contract rule exists, clean visits stay clean, alert ids are stable."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compliance import ENGINE_VERSION, Engine, RuleId
from compliance.alerts import alert_id
from compliance.engine import _trusted
from compliance.findings import SEVERITY
from compliance.rules import RULE_IDS
from schemas import ComplianceAlert, VisitChecked
from schemas.visit import Payer, RenderingProvider, ServiceLine, TherapyVisitCompleted
from tests.factories import line, model, payload, timed_visit

NOW = datetime(2026, 3, 2, 15, 4, 6, tzinfo=UTC)
CONTRACT = {
    "TIMED_UNITS_EXCEED_MINUTES": "error",
    "TIMED_UNITS_BELOW_MINUTES": "warning",
    "TIMED_UNITS_MISALLOCATED": "error",
    "TIMED_MINUTES_MISSING": "warning",
    "TOTAL_TIMED_MINUTES_MISMATCH": "error",
    "TREATMENT_TIME_INCONSISTENT": "error",
    "WRITTEN_REPORT_MISSING": "error",
    "CODE_NOT_VALID_ON_DATE": "error",
    "UNTIMED_CODE_MULTIPLE_UNITS": "error",
    "THERAPY_MODIFIER_MISSING": "error",
    "UNKNOWN_CODE": "warning",
    # EVENTS.md "v1 additions" (claim-level rules).
    "ASSISTANT_MODIFIER_MISSING": "error",
    "ASSISTANT_MODIFIER_UNPAIRED": "error",
    "NCCI_PTP_CONFLICT": "error",
    "MUE_EXCEEDED": "error",
    "EVALUATION_DUPLICATE": "error",
    "ADD_ON_CODE_WITHOUT_PRIMARY": "error",
    # EVENTS.md "v1 additions" (episodes of care, KX threshold).
    "PROGRESS_REPORT_OVERDUE": "error",
    "PROGRESS_REPORT_BY_ASSISTANT": "warning",
    "PLAN_OF_CARE_MISSING": "error",
    "CERTIFICATION_MISSING": "error",
    "RECERTIFICATION_MISSING": "error",
    "KX_MODIFIER_MISSING": "error",
    "KX_MODIFIER_PREMATURE": "warning",
    # EVENTS.md "Other additive rule ids" (the EHR join)
    "CHARGES_NOT_RECEIVED": "warning",
    "DOCUMENTATION_NOT_RECEIVED": "warning",
    # EVENTS.md "Other additive rule ids": "error: the NPI fails its check digit"
    "RENDERING_NPI_INVALID": "error",
}


def test_every_contract_rule_id_exists_with_its_severity_and_runs_once() -> None:
    assert {r.value: SEVERITY[r].value for r in RuleId} == CONTRACT
    assert sorted(RULE_IDS) == sorted(RuleId)


def test_every_rule_id_is_in_the_readme_rule_table() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    table = readme.split("## The rules\n\n", 1)[1].split("\n\n", 1)[0]
    assert [r.value for r in RuleId if f"`{r.value}`" not in table] == []


def test_engine_version_matches_the_package() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == ENGINE_VERSION


def test_fully_compliant_visit_yields_no_findings_and_a_clean_checked(engine: Engine) -> None:
    data = timed_visit(("97110", 2, 33), ("97140", 1, 7))
    data["services"].append(line("3", "97750", 1, 10))
    data["total_timed_minutes"] = 50
    data["total_treatment_minutes"] = 55
    data["documents"] = [
        {
            "doc_id": "D-1",
            "kind": "written_report",
            "cpt": "97750",
            "signed_at": "2026-03-02T16:00:00Z",
            "author_credential": "PT",
        }
    ]
    # 33 + 7 + 10 = 50 -> 3 units; full: 97110 2; leftovers 3, 7, 10 -> 97750 gets the unit.
    data["services"][1]["units"] = 0
    visit = model(data)
    assert engine.check(visit) == []
    outcome = engine.evaluate(visit, NOW)
    assert outcome.alerts == []
    assert outcome.checked.status.value == "clean"
    assert outcome.checked.model().rules_evaluated == len(CONTRACT)


def test_alerts_validate_against_the_strict_contract_and_ids_are_deterministic(
    engine: Engine,
) -> None:
    data = timed_visit(("97110", 3, 33), ("97140", 1, 7))
    data["services"][0]["modifiers"] = []
    visit = model(data)
    first = engine.evaluate(visit, NOW)
    again = engine.evaluate(model(data), datetime(2027, 1, 1, tzinfo=UTC))
    assert [a.alert_id for a in first.alerts] == [a.alert_id for a in again.alerts]
    assert len({a.alert_id for a in first.alerts}) == len(first.alerts) == 2
    for alert in first.alerts:
        parsed = ComplianceAlert.model_validate_json(alert.to_json())  # the strict contract
        assert parsed == alert.model()
        assert (parsed.alert_id, parsed.rule_id, parsed.severity.value) == (
            alert.alert_id,
            alert.rule_id,
            alert.severity,
        )
        assert parsed.alert_id == alert_id(visit.event_id, parsed.rule_id, parsed.line_ids)
        assert parsed.detected_at == NOW and parsed.engine_version == ENGINE_VERSION
        assert b'"detected_at":"2026-03-02T15:04:06Z"' in alert.to_json()
    checked = VisitChecked.model_validate_json(first.checked.to_json())
    assert checked.status.value == "flagged"
    assert checked.alert_ids == [a.alert_id for a in first.alerts]


def test_alert_id_depends_on_event_rule_and_line_set_only() -> None:
    a = alert_id("e1", "UNKNOWN_CODE", ["2", "1"])
    assert a == alert_id("e1", "UNKNOWN_CODE", ["1", "2"])
    assert a != alert_id("e2", "UNKNOWN_CODE", ["1", "2"])
    assert a != alert_id("e1", "UNKNOWN_CODE", ["1"])
    assert a != alert_id("e1", "TIMED_MINUTES_MISSING", ["1", "2"])
    assert alert_id("a|b", "R", ["c"]) != alert_id("a", "b|R", ["c"])
    assert alert_id("e", "R", ["1,2"]) != alert_id("e", "R", ["1", "2"])


def test_contract_example_alert(engine: Engine) -> None:
    # EVENTS.md ComplianceAlert example: 4 units billed for 40 minutes.
    data = payload(
        services=[line("1", "97110", 3, 33), line("2", "97140", 1, 7)],
        total_timed_minutes=40,
        total_treatment_minutes=45,
        documents=[],
    )
    [alert] = engine.evaluate(model(data), NOW).alerts
    dumped: dict[str, Any] = alert.model().model_dump(mode="json")
    assert dumped["rule_id"] == "TIMED_UNITS_EXCEED_MINUTES" and dumped["severity"] == "error"
    assert dumped["line_ids"] == ["1", "2"] and dumped["cpt"] is None
    assert dumped["expected"]["total_units"] == 3
    assert dumped["observed"] == {"total_units": 4, "total_timed_minutes": 40}
    assert dumped["reference"] == "CMS Pub. 100-04, Ch. 5, sec. 20.2"
    assert dumped["detected_at"] == "2026-03-02T15:04:06Z"
    assert dumped["payer_id"] == "MEDICARE-B" and dumped["visit_id"] == "V-1001"


def test_the_rebuilt_visit_of_a_rejudgement_is_what_model_construct_builds() -> None:
    # engine._trusted skips model_construct's walk over the fields: only valid for models
    # whose fields are all given, without aliases, private attributes, post-init or extras.
    visit = model(timed_visit(("97110", 3, 33), ("97140", 1, 7)))
    for m in (visit, visit.payer, visit.rendering_provider, *visit.services):
        cls = type(m)
        assert cls in (TherapyVisitCompleted, Payer, RenderingProvider, ServiceLine)
        assert not cls.__private_attributes__ and not cls.__pydantic_post_init__
        assert cls.model_config.get("extra") != "allow"
        assert all(
            f.alias is None and f.validation_alias is None for f in cls.model_fields.values()
        )
        fields = dict(m)
        fast, slow = _trusted(cls, **fields), cls.model_construct(**fields)
        assert fast == slow and fast.model_dump() == slow.model_dump()
        assert fast.model_fields_set == slow.model_fields_set


def test_the_rebuilt_visit_of_a_re_judgement_is_model_constructs() -> None:
    # engine._visit_of (re-judgement) once called TherapyVisitCompleted.model_construct with
    # every field but the two visit totals, which the cross-visit rules do not read: built
    # with _trusted it must be the same model, fields set and field order included (a review
    # found the totals in the fields set).
    from compliance import Engine
    from compliance.engine import _visit_of
    from compliance.state import PatientHistory

    engine = Engine()
    visit = model(timed_visit(("97110", 3, 33), ("97140", 1, 7)))
    outcome = engine.evaluate(visit, NOW, PatientHistory(), 1)
    assert outcome.history is not None
    record = outcome.history.versions(visit.visit_id)[-1]
    fast = _visit_of(record, visit.patient_ref)
    given = {k: v for k, v in fast.__dict__.items() if k in fast.model_fields_set}
    slow = TherapyVisitCompleted.model_construct(**given)
    assert fast.model_fields_set == set(TherapyVisitCompleted.model_fields) - {
        "total_timed_minutes",
        "total_treatment_minutes",
    }
    assert fast == slow and list(fast.__dict__) == list(slow.__dict__)
    assert fast.model_dump() == slow.model_dump()
