"""The pure join: any arrival order, duplicates, corrections, cancels, one part only; every
assembled visit is a valid TherapyVisitCompleted v1."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ehr import (
    PART_ADAPTER,
    AssemblyProblem,
    ChargePart,
    DocumentationPart,
    VisitState,
    add_part,
    assemble,
    is_newer,
    load_config,
    missing_part,
    parse_fhir,
    parse_hl7v2,
)
from schemas.visit import TherapyVisitCompleted

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")


def part(name: str) -> ChargePart | DocumentationPart:
    result = parse_hl7v2((FIX / name).read_bytes(), CONFIG)
    assert isinstance(result, ChargePart | DocumentationPart), result
    return result


DFT = part("dft_p03_pt_v1001.hl7")
DFT_RESENT = part("dft_p03_pt_v1001_resent.hl7")
MDM = part("mdm_t02_pt_daily_v1001.hl7")
MDM_EDIT = part("mdm_t08_pt_daily_v1001_edit.hl7")
MDM_CANCEL = part("mdm_t11_cancel_v1001.hl7")
REPORT = part("mdm_t02_ppt_unsigned_evn_t10.hl7")
ORU = part("oru_r01_pt_minutes_v1001.hl7")


def fold(*parts: ChargePart | DocumentationPart) -> VisitState:
    state: VisitState | None = None
    for p in parts:
        state = add_part(state, p)
    assert state is not None
    return state


def visit(state: VisitState, partial_ok: bool = False) -> dict[str, Any]:
    event = assemble(state, partial_ok=partial_ok)
    assert isinstance(event, dict), event
    TherapyVisitCompleted.model_validate_json(json.dumps(event))  # the contract, strictly
    return event


def test_charges_and_note_make_the_contract_example_visit() -> None:
    event = visit(fold(DFT, MDM))
    assert event["visit_id"] == "CLINIC01:V1001"
    assert event["patient_ref"] == DFT.patient_ref
    assert event["date_of_service"] == "2026-03-02"
    assert event["occurred_at"] == "2026-03-02T17:00:00Z"
    assert event["rendering_provider"] == {"npi": "1234567893", "credential": "PT"}
    assert event["services"] == [
        {"line_id": "1", "cpt": "97110", "units": 2, "modifiers": ["GP"], "minutes": 33},
        {"line_id": "2", "cpt": "97140", "units": 1, "modifiers": ["GP", "59"], "minutes": 7},
    ]
    assert (event["total_timed_minutes"], event["total_treatment_minutes"]) == (40, 45)
    assert event["documents"][0]["kind"] == "daily_note"
    assert "parts_missing" not in event


def test_waits_for_the_other_part_unless_the_wait_expired() -> None:
    only_charges = fold(DFT)
    assert missing_part(only_charges) == "documentation"
    assert assemble(only_charges) is None
    event = visit(only_charges, partial_ok=True)
    assert event["parts_missing"] == ["documentation"]
    assert event["services"][0]["minutes"] == 33  # the charge's own PR1-7 minutes
    assert "total_timed_minutes" not in event and event["documents"] == []

    only_note = fold(MDM)
    assert missing_part(only_note) == "charges"
    event = visit(only_note, partial_ok=True)
    assert event["parts_missing"] == ["charges"]
    assert event["services"] == [] and event["payer"] == {"payer_id": "UNKNOWN", "kind": "other"}
    assert event["rendering_provider"] == {"npi": "1234567893", "credential": "PT"}
    assert event["discipline"] == "PT" and event["total_timed_minutes"] == 40


def test_every_arrival_order_and_duplicates_give_one_visit() -> None:
    parts = [DFT, DFT_RESENT, MDM, MDM_EDIT, REPORT, DFT, MDM]
    results = {
        json.dumps(visit(fold(*order)), sort_keys=True) for order in itertools.permutations(parts)
    }
    assert len(results) == 1
    event = json.loads(results.pop())
    # The re-sent DFT replaced the first (97140 x2, no PR1 minutes), never doubled it; the T08
    # edit replaced the note (97110 30 min).
    assert [(s["cpt"], s["units"], s.get("minutes")) for s in event["services"]] == [
        ("97110", 2, 30),
        ("97140", 2, 7),
    ]
    assert (event["total_timed_minutes"], event["total_treatment_minutes"]) == (37, 42)
    assert {d["doc_id"] for d in event["documents"]} == {"DOC-1001-DAILY", "DOC-1001-PPT"}


def test_event_id_is_stable_for_the_same_parts_and_changes_with_a_correction() -> None:
    first = visit(fold(DFT, MDM))
    again = visit(fold(MDM, DFT, DFT))
    corrected = visit(fold(DFT, MDM, DFT_RESENT))
    assert first["event_id"] == again["event_id"]
    assert corrected["event_id"] != first["event_id"]
    partial = visit(fold(DFT), partial_ok=True)
    assert partial["event_id"] not in (first["event_id"], corrected["event_id"])


def test_newer_version_decides_and_a_redelivery_is_not_newer() -> None:
    assert is_newer(DFT_RESENT, DFT) and not is_newer(DFT, DFT_RESENT)
    assert not is_newer(DFT, DFT)
    assert fold(DFT_RESENT, DFT).charges == DFT_RESENT  # late arrival of the older one


def test_cancel_removes_the_note_whatever_the_order() -> None:
    for order in itertools.permutations([DFT, MDM, MDM_CANCEL]):
        state = fold(*order)
        assert missing_part(state) == "documentation"
        event = visit(state, partial_ok=True)
        assert event["parts_missing"] == ["documentation"] and event["documents"] == []


def test_minutes_from_an_oru_and_documents_from_an_mdm() -> None:
    event = visit(fold(DFT_RESENT, ORU, REPORT))
    assert [s.get("minutes") for s in event["services"]] == [33, 7]
    (doc,) = event["documents"]
    assert (doc["kind"], doc["cpt"]) == ("written_report", "97750")
    assert "signed_at" not in doc  # unsigned: WRITTEN_REPORT_MISSING can fire


def test_documented_but_unbilled_code_becomes_a_zero_unit_line() -> None:
    note = MDM.model_copy(update={"minutes_by_cpt": {"97110": 33, "97140": 7, "97035": 8}})
    event = visit(fold(DFT, note))
    assert event["services"][-1] == {
        "line_id": "doc-97035",
        "cpt": "97035",
        "units": 0,
        "minutes": 8,
        "modifiers": [],
    }


def test_conflicting_patients_do_not_assemble() -> None:
    other = MDM.model_copy(update={"patient_ref": "P-00000000000000000000"})
    assert isinstance(assemble(fold(DFT, other)), AssemblyProblem)


def test_note_without_discipline_or_date_cannot_stand_alone() -> None:
    bare = MDM.model_copy(update={"discipline": None})
    problem = assemble(fold(bare), partial_ok=True)
    assert isinstance(problem, AssemblyProblem) and "discipline" in problem.detail


def test_parts_and_state_round_trip_through_json() -> None:
    for p in (DFT, MDM, MDM_CANCEL, ORU):
        assert PART_ADAPTER.validate_json(p.model_dump_json()) == p
    state = fold(DFT, MDM, REPORT)
    assert VisitState.model_validate_json(state.model_dump_json()) == state


def test_fhir_bundle_joins_like_hl7() -> None:
    data = (FIX / "fhir_bundle_pt_v4004.json").read_bytes()
    result = parse_fhir(data, CONFIG, datetime(2026, 3, 5, tzinfo=UTC))
    assert result.rejections == ()
    kinds = sorted(type(p).__name__ for p in result.parts)
    assert kinds == ["ChargePart", "DocumentationPart", "DocumentationPart"]
    event = visit(fold(*result.parts))
    assert event["visit_id"] == "FHIR:V4004"
    assert [(s["cpt"], s["units"], s["modifiers"], s["minutes"]) for s in event["services"]] == [
        ("97110", 2, ["GP"], 33),  # performedPeriod 09:05-09:38
        ("97140", 1, ["GP", "59"], 7),  # minutes extension
    ]
    assert (event["total_timed_minutes"], event["total_treatment_minutes"]) == (40, 45)
    (doc,) = event["documents"]
    # DocumentReference.date 2026-03-04T11:00:00-05:00, the same instant in the profile's zone
    # (the shipped profile's UTC: 16:00Z; docs/integration-hl7.md "Times and dates").
    assert doc["kind"] == "progress_report" and doc["signed_at"] == "2026-03-04T16:00:00Z"


PARTS = [DFT, DFT_RESENT, MDM, MDM_EDIT, MDM_CANCEL, REPORT, ORU]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PARTS), min_size=1, max_size=10), st.randoms())
def test_join_is_order_independent_and_idempotent(parts: list[Any], rnd: Any) -> None:
    shuffled = list(parts)
    rnd.shuffle(shuffled)
    a, b = fold(*parts), fold(*shuffled)
    assert a == b
    assert fold(*parts, *parts) == a
    ea, eb = assemble(a, partial_ok=True), assemble(b, partial_ok=True)
    assert ea == eb
    if isinstance(ea, dict):
        TherapyVisitCompleted.model_validate_json(json.dumps(ea))
