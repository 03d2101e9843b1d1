"""Event contracts v1: strict validation, dead-letter reasons, JSON Schema files up to date."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import ComplianceAlert, DeadLetter, Rejection, VisitChecked, decode_visit
from schemas.common import DeadLetterReason as R
from schemas.export import OUT_DIR
from schemas.export import main as export_main
from schemas.visit import TherapyVisitCompleted
from tests.factories import BASE, line, payload, raw


def good() -> dict[str, Any]:
    return payload(
        services=[line("1", "97110", 2, 33)], total_timed_minutes=33, total_treatment_minutes=40
    )


def rejected(data: bytes) -> Rejection:
    result = decode_visit(data)
    assert isinstance(result, Rejection), result
    return result


def test_contract_example_is_valid() -> None:
    visit = decode_visit(raw(good()))
    assert isinstance(visit, TherapyVisitCompleted)
    assert visit.services[0].units == 2 and visit.services[0].modifiers == ["GP"]


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    data = good()
    data["new_optional_field"] = {"x": 1}
    data["services"][0]["another"] = True
    visit = decode_visit(raw(data))
    assert isinstance(visit, TherapyVisitCompleted)
    assert "new_optional_field" not in visit.model_dump()


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["services"][0].update(minutes=-1), "services.0.minutes"),
        (lambda d: d["services"][0].update(units=-1), "services.0.units"),
        (lambda d: d["services"][0].update(units="2"), "services.0.units"),
        (lambda d: d["services"][0].update(units=2.5), "services.0.units"),
        (lambda d: d["services"][0].update(units=True), "services.0.units"),
        (lambda d: d.update(discipline="PTX"), "discipline"),
        (lambda d: d["payer"].update(kind="tricare"), "payer.kind"),
        (lambda d: d["payer"].update(unit_rule="seven_minute"), "payer.unit_rule"),
        (
            lambda d: d["rendering_provider"].update(credential="RN"),
            "rendering_provider.credential",
        ),
        (lambda d: d["rendering_provider"].update(npi="12345"), "rendering_provider.npi"),
        (lambda d: d.pop("visit_id"), "visit_id"),
        (lambda d: d.pop("services"), "services"),
        (lambda d: d.pop("event_id"), "event_id"),
        (lambda d: d.update(occurred_at="2026-03-02T15:04:05"), "occurred_at"),
        (lambda d: d.update(date_of_service="03/02/2026"), "date_of_service"),
        (
            lambda d: d["services"][0].update(modifiers=["GP", "59", "KX", "CQ", "XU"]),
            "services.0.modifiers",
        ),
        (lambda d: d["services"][0].update(modifiers=["G"]), "services.0.modifiers.0"),
        (lambda d: d["services"][0].update(cpt="9711"), "services.0.cpt"),
        (lambda d: d.update(visit_id=""), "visit_id"),
        (lambda d: d.update(patient_ref="P\u00e9-1"), "patient_ref"),
        (lambda d: d.update(total_timed_minutes=-5), "total_timed_minutes"),
        (lambda d: d.update(documents=[{"doc_id": "D", "kind": "memo"}]), "documents.0.kind"),
        (lambda d: d.update(schema_version="1"), "schema_version"),
    ],
)
def test_schema_violations_name_the_field(mutate: Any, path: str) -> None:
    data = good()
    mutate(data)
    r = rejected(raw(data))
    assert r.reason is R.SCHEMA_VIOLATION
    assert r.detail.startswith(path + ":") or f"; {path}:" in r.detail, r.detail


def test_v1_additions_are_accepted_and_typed() -> None:
    # EVENTS.md "v1 additions": episode fields, new document kinds and their fields, line
    # assistant_minutes and allowed_amount (a decimal string, never a float).
    data = good()
    data.update(episode_ref="E-1", episode_start_date="2026-02-20")
    data["services"][0].update(assistant_minutes=10, allowed_amount="58.12")
    data["documents"] = [
        {
            "doc_id": "D-1",
            "kind": "plan_of_care",
            "signed_at": "2026-02-20T10:00:00Z",
            "author_credential": "PT",
            "plan_start": "2026-02-20",
            "plan_end": "2026-05-20",
            "sent_to_certifier_at": "2026-02-21T09:00:00Z",
        },
        {
            "doc_id": "D-2",
            "kind": "certification",
            "signed_at": "2026-03-01T10:00:00Z",
            "author_credential": "MD",
            "verbal_order_at": "2026-02-25T10:00:00Z",
            "covers_from": "2026-02-20",
            "covers_through": "2026-05-19",
            "delay_reason_documented": False,
        },
        {"doc_id": "D-3", "kind": "referral", "discipline": "PT", "document_date": "2026-02-01"},
        {"doc_id": "D-4", "kind": "discharge_summary"},
        {"doc_id": "D-5", "kind": "re_evaluation", "signed_at": "2026-03-02T16:00:00Z"},
    ]
    visit = decode_visit(raw(data))
    assert isinstance(visit, TherapyVisitCompleted), visit
    assert visit.episode_ref == "E-1" and str(visit.episode_start_date) == "2026-02-20"
    assert visit.services[0].allowed_amount == "58.12"
    assert visit.documents[1].covers_through is not None


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (lambda d: d["services"][0].update(allowed_amount=58.12), "allowed_amount"),
        (lambda d: d["services"][0].update(allowed_amount="58.123456"), "allowed_amount"),
        (lambda d: d["services"][0].update(allowed_amount="-1"), "allowed_amount"),
        (lambda d: d["services"][0].update(assistant_minutes=40), "assistant_minutes exceeds"),
        (
            lambda d: d.update(
                documents=[
                    {
                        "doc_id": "D",
                        "kind": "plan_of_care",
                        "plan_start": "2026-03-01",
                        "plan_end": "2026-02-01",
                    }
                ]
            ),
            "plan_end is before plan_start",
        ),
        (
            lambda d: d.update(documents=[{"doc_id": "D", "kind": "referral", "discipline": "RN"}]),
            "documents.0.discipline",
        ),
    ],
)
def test_v1_additions_are_strict(mutate: Any, text: str) -> None:
    data = good()
    mutate(data)
    r = rejected(raw(data))
    assert r.reason is R.SCHEMA_VIOLATION and text in r.detail, r.detail


def test_duplicate_line_id_and_future_date_of_service() -> None:
    data = good()
    data["services"].append(line("1", "97140", 1, 8))
    assert "duplicate line_id '1'" in rejected(raw(data)).detail
    data = good()
    data["date_of_service"] = "2026-03-04"  # occurred 2026-03-02
    assert "date_of_service is after occurred_at" in rejected(raw(data)).detail
    data["date_of_service"] = "2026-03-03"  # one day of time-zone slack
    assert isinstance(decode_visit(raw(data)), TherapyVisitCompleted)


def test_too_many_service_lines() -> None:
    data = good()
    data["services"] = [line(str(i), "97110", 0, 1) for i in range(101)]
    assert rejected(raw(data)).reason is R.SCHEMA_VIOLATION


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", R.INVALID_JSON),
        (b"not json", R.INVALID_JSON),
        (b'{"schema_version": 1, "event_id": ', R.INVALID_JSON),
        (b"\xff\xfe\x00", R.INVALID_JSON),
        (b"[" * 5000 + b"]" * 5000, R.INVALID_JSON),
        (b"[]", R.SCHEMA_VIOLATION),
        (b"null", R.SCHEMA_VIOLATION),
        (b'"a string"', R.SCHEMA_VIOLATION),
        (raw({**BASE, "schema_version": 2}), R.UNSUPPORTED_VERSION),
        (raw({**BASE, "schema_version": 0}), R.UNSUPPORTED_VERSION),
    ],
)
def test_dead_letter_reasons(data: bytes, reason: R) -> None:
    assert rejected(data).reason is reason


def test_too_large() -> None:
    data = raw(good())
    r = decode_visit(data, max_bytes=len(data) - 1)
    assert isinstance(r, Rejection) and r.reason is R.TOO_LARGE
    assert isinstance(decode_visit(data, max_bytes=len(data)), TherapyVisitCompleted)


def test_rejection_detail_never_echoes_input_values() -> None:
    data = good()
    data["visit_id"] = "SSN-123-45-6789\u0007"
    data["patient_ref"] = {"name": "Jane Marker-Doe"}
    data["discipline"] = "Jane Marker-Doe"
    detail = rejected(raw(data)).detail
    assert "Marker" not in detail and "6789" not in detail
    bad_json = b'{"visit_id": "Jane Marker-Doe", oops}'
    assert "Marker" not in rejected(bad_json).detail


def test_outbound_models_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        VisitChecked.model_validate({"surprise": 1})
    with pytest.raises(ValidationError, match="extra"):
        DeadLetter.model_validate(
            {
                "reason": "invalid_json",
                "detail": "x",
                "key_b64": None,
                "value_b64": "",
                "source": {"topic": "t", "partition": 0, "offset": 0},
                "rejected_at": "2026-03-02T00:00:00Z",
                "extra": 1,
            }
        )
    assert "alert_id" in ComplianceAlert.model_fields


def test_json_schema_files_are_up_to_date() -> None:
    # Fails when a model changed without `python -m schemas.export`.
    assert export_main(["--check"]) == 0


def test_json_schema_of_visit_documents_the_rules() -> None:
    schema = orjson.loads((OUT_DIR / "therapy_visit_completed.v1.schema.json").read_bytes())
    assert set(schema["required"]) >= {"schema_version", "event_id", "visit_id", "services"}
    line_schema = schema["$defs"]["ServiceLine"]["properties"]
    assert line_schema["units"]["minimum"] == 0
