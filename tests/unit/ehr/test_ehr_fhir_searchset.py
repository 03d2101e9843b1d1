"""Issue 20 item 7: FHIR `searchset` bundles (what a FHIR REST search returns) are read.

FHIR R4 Bundle.type searchset ("the bundle is a list of resources returned as a result of a
search/query/filter operation"); Bundle.entry.search.mode (0..1, SearchEntryMode): `match` and
`include` entries are read as in a collection; `outcome` holds an OperationOutcome about the
search (R4 OperationOutcome.issue.severity: error/fatal = the action failed -> refused
`search_failed`; information/warning -> a counted warning); no mode -> a match (the element is
0..1; the spec's bundle-example: servers "are not required to populate this"). The oracle for
what a searchset gives: the same resources in a collection bundle, a type the converter already
reads.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ehr import RejectReason, WarnReason, parse_fhir
from tests.unit.ehr.ehrtest import CONFIG
from tests.unit.ehr.fhirbuild import (
    MRN,
    NOW,
    claim,
    collection,
    convert,
    defibrillator_implant,
    outcome,
    patient,
    people,
    procedure,
    searchset,
)


def matches() -> list[dict[str, Any]]:
    return [claim(("97110", 2), ("97140", 1)), procedure("pc1", "97110", 33)]


def as_collection(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same entries, fullUrls and id in a collection bundle (search elements dropped)."""
    out = copy.deepcopy(bundle)
    out["type"] = "collection"
    for key in ("total", "link"):
        out.pop(key)
    for e in out["entry"]:
        e.pop("search", None)
    return out


def test_a_rest_query_response_converts_like_the_same_collection(tmp_path: Path) -> None:
    bundle = searchset(matches(), people())
    code, visits, err = convert(bundle, CONFIG, tmp_path)
    _, expected, _ = convert(as_collection(bundle), CONFIG, tmp_path)
    assert code == 0 and visits == expected
    [visit] = visits
    # The visit the resources describe: Encounter e1 (default facility FHIR, its logical id),
    # 97110 x2 with the Procedure's 33 minutes (09:05-09:38), 97140 x1, GP -> PT.
    assert visit["visit_id"] == "FHIR:e1" and visit["discipline"] == "PT"
    assert [(s["cpt"], s["units"], s.get("minutes")) for s in visit["services"]] == [
        ("97110", 2, 33),
        ("97140", 1, None),
    ]
    assert visit["rendering_provider"]["npi"] == "1234567893"
    assert "parts_missing" not in visit
    assert err[-1]["summary"] == {
        "parts": 2,
        "rejected": 0,
        "warnings": 0,
        "visits_written": 1,
        "not_assembled": 0,
    }


def test_included_resources_are_read_too() -> None:
    # A Procedure reached by _revinclude is an include entry: still documentation.
    bundle = searchset([claim(("97110", 2))], [*people(), procedure("pc1", "97110", 33)])
    result = parse_fhir(bundle, CONFIG, NOW)
    assert sorted(p.part for p in result.parts) == ["charges", "documentation"]
    assert result.rejections == () and result.warnings == ()


def test_entries_without_search_mode_are_matches() -> None:
    bundle = searchset(matches(), people())
    for e in bundle["entry"]:
        del e["search"]
    with_modes = parse_fhir(searchset(matches(), people()), CONFIG, NOW)
    without = parse_fhir(bundle, CONFIG, NOW)
    assert without.parts == with_modes.parts and len(without.parts) == 2
    assert without.rejections == () and without.warnings == ()


def test_a_warning_outcome_is_counted_and_quotes_no_patient_data(tmp_path: Path) -> None:
    bundle = searchset(matches(), people(), [outcome("warning", "too-costly")])
    code, visits, err = convert(bundle, CONFIG, tmp_path)
    _, expected, _ = convert(searchset(matches(), people()), CONFIG, tmp_path)
    assert code == 0 and visits == expected
    [warning] = [e for e in err if "warning" in e]
    assert warning["warning"] == WarnReason.SEARCH_OUTCOME == "search_outcome"
    assert "'warning'/'too-costly'" in warning["detail"] and "entry[7]" in warning["detail"]
    assert MRN not in warning["detail"]
    assert err[-1]["summary"]["warnings"] == 1


def test_an_empty_result_with_a_warning_is_no_visit_and_no_rejection() -> None:
    # R4's bundle-search-warning example: total 0, one outcome "not-found" (warning).
    bundle = searchset([], [], [outcome("warning", "not-found")])
    result = parse_fhir(bundle, CONFIG, NOW)
    assert result.parts == () and result.rejections == ()
    # Changed by the review (defect 9): the empty page is said too (search_empty).
    assert [w.reason for w in result.warnings] == [
        WarnReason.SEARCH_OUTCOME,
        WarnReason.SEARCH_EMPTY,
    ]


def test_an_empty_result_is_a_counted_warning_not_a_dead_letter() -> None:
    # Changed by the review (defect 9; was not_a_visit): a search with no match (Bundle.total 0,
    # no entry) is an ordinary answer to a polling system, not a bad message.
    for bundle in (searchset([], []), searchset([], [], [outcome("information", "informational")])):
        result = parse_fhir(bundle, CONFIG, NOW)
        assert result.parts == () and result.rejections == ()
        assert result.warnings[-1].reason == WarnReason.SEARCH_EMPTY == "search_empty"
        assert result.warnings[-1].message_id == "8f1c2b7e-search"


def test_an_error_outcome_without_mode_or_as_a_match_refuses_the_bundle() -> None:
    # R4 search.html "Handling Errors": an OperationOutcome in a searchset is about the search,
    # whatever search.mode says (the reviewer's cases C and C2).
    for mode in (None, "match", "include"):
        bundle = searchset(matches(), people(), [outcome("error", "too-costly")])
        if mode is None:
            del bundle["entry"][-1]["search"]
        else:
            bundle["entry"][-1]["search"]["mode"] = mode
        result = parse_fhir(bundle, CONFIG, NOW)
        assert result.parts == () and result.warnings == (), mode
        [rejection] = result.rejections
        assert rejection.reason == RejectReason.SEARCH_FAILED, mode
        assert "'error'/'too-costly'" in rejection.detail and MRN not in rejection.detail
    bundle = searchset(matches(), people(), [outcome("warning", "too-costly")])
    del bundle["entry"][-1]["search"]
    result = parse_fhir(bundle, CONFIG, NOW)
    assert len(result.parts) == 2 and result.rejections == ()
    assert [w.reason for w in result.warnings] == [WarnReason.SEARCH_OUTCOME]


def test_an_error_outcome_refuses_the_bundle_naming_severity_and_code_only() -> None:
    for severity in ("error", "fatal"):
        bundle = searchset(matches(), people(), [outcome(severity, "too-costly")])
        result = parse_fhir(bundle, CONFIG, NOW)
        assert result.parts == () and result.warnings == ()
        [rejection] = result.rejections
        assert rejection.reason == RejectReason.SEARCH_FAILED == "search_failed"
        assert f"'{severity}'/'too-costly'" in rejection.detail
        assert MRN not in rejection.detail and rejection.message_id == "8f1c2b7e-search"


def test_an_unknown_mode_or_a_non_outcome_in_outcome_mode_is_refused() -> None:
    bundle = searchset(matches(), people())
    bundle["entry"][0]["search"]["mode"] = "matched"
    [rej] = parse_fhir(bundle, CONFIG, NOW).rejections
    assert rej.reason == RejectReason.BAD_VALUE and "entry[1].search.mode 'matched'" in rej.detail
    bundle = searchset(matches(), people(), [patient()])
    [rej] = parse_fhir(bundle, CONFIG, NOW).rejections
    assert rej.reason == RejectReason.BAD_VALUE and "holds a Patient" in rej.detail


def test_a_paged_result_is_read_with_a_warning() -> None:
    bundle = searchset(matches(), people(), next_page=True)
    result = parse_fhir(bundle, CONFIG, NOW)
    assert len(result.parts) == 2 and result.rejections == ()
    assert [w.reason for w in result.warnings] == [WarnReason.SEARCH_PAGED]


def test_non_therapy_procedures_of_a_searchset_are_warnings_too() -> None:
    bundle = searchset([*matches(), defibrillator_implant()], people())
    result = parse_fhir(bundle, CONFIG, NOW)
    docs = [p for p in result.parts if p.part == "documentation"]
    assert [d.minutes_by_cpt for d in docs] == [{"97110": 33}]
    assert [w.reason for w in result.warnings] == [WarnReason.NOT_THERAPY_PROCEDURE]


def test_other_bundle_types_are_still_refused() -> None:
    for kind in ("history", "batch", "document", "message", "transaction-response"):
        bundle = collection(matches())
        bundle["type"] = kind
        [rej] = parse_fhir(bundle, CONFIG, NOW).rejections
        assert rej.reason == RejectReason.UNSUPPORTED_TYPE and "searchset" in rej.detail
