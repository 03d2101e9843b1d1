"""`convert --from hl7|fhir FILE`: JSON Lines visits on stdout, one JSON rejection per line on
stderr, exit 1 when anything was rejected."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ehr import convert_main, load_config, mllp_frame
from schemas.visit import TherapyVisitCompleted
from tests.tools import EHR_SAMPLES, require_samples

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
SAMPLES = EHR_SAMPLES
CONFIG = load_config(b"test-key-0123456789abcdef")
NOW = datetime(2026, 3, 5, tzinfo=UTC)


def run(source: str, path: Path) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    out, err = io.BytesIO(), io.StringIO()
    code = convert_main(source, str(path), out, err, CONFIG, now=NOW)  # type: ignore[arg-type]
    visits = [json.loads(line) for line in out.getvalue().splitlines()]
    for v in visits:
        TherapyVisitCompleted.model_validate_json(json.dumps(v))
    return code, visits, [json.loads(line) for line in err.getvalue().splitlines()]


def fx(name: str) -> bytes:
    return (FIX / name).read_bytes()


def test_hl7_file_joins_and_emits_partials_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "feed.hl7"
    path.write_bytes(
        mllp_frame(fx("dft_p03_pt_v1001.hl7"))
        + mllp_frame(fx("dft_p03_ot_department.hl7"))
        + mllp_frame(fx("mdm_t02_pt_daily_v1001.hl7"))
        + mllp_frame(fx("mdm_t08_pt_daily_v1001_edit.hl7"))
    )
    code, visits, err = run("hl7", path)
    assert code == 0
    assert err[-1] == {
        "summary": {
            "parts": 4,
            "rejected": 0,
            "warnings": 0,
            "visits_written": 3,
            "not_assembled": 0,
        }
    }
    first, edited, ot_partial = visits
    assert first["visit_id"] == edited["visit_id"] == "CLINIC01:V1001"
    assert first["event_id"] != edited["event_id"]  # the T08 edit is a correction
    assert edited["total_timed_minutes"] == 37
    assert ot_partial["visit_id"] == "CLINIC01:V2002"
    assert ot_partial["parts_missing"] == ["documentation"]


def test_rejected_messages_go_to_stderr_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "feed.hl7"
    path.write_bytes(
        fx("dft_p03_charge_and_credit.hl7").replace(b"\r", b"\n")
        + b"\n"
        + fx("dft_p03_pt_v1001.hl7").replace(b"\r", b"\n")
        + b"\nthis is not hl7\n"
    )
    code, visits, err = run("hl7", path)
    assert code == 1
    assert [e["reason"] for e in err[:-1]] == ["unsupported_transaction", "not_hl7"]
    assert err[0]["message"] == 1 and "FT1-6" in err[0]["detail"]
    assert len(visits) == 1 and visits[0]["parts_missing"] == ["documentation"]


def test_missing_file_exits_2(tmp_path: Path) -> None:
    out, err = io.BytesIO(), io.StringIO()
    assert convert_main("hl7", str(tmp_path / "nope"), out, err, CONFIG) == 2


def test_fhir_bundle_file(tmp_path: Path) -> None:
    code, visits, _err = run("fhir", FIX / "fhir_bundle_pt_v4004.json")
    assert code == 0
    (visit,) = visits
    assert visit["visit_id"] == "FHIR:V4004" and "parts_missing" not in visit


def test_fhir_ndjson_of_bundles_and_loose_resources(tmp_path: Path) -> None:
    bundle = json.loads(fx("fhir_bundle_pt_v4004.json"))
    preauth = (
        SAMPLES
        / "fhir/davinci-pas-2.2.1_Claim-MedicalServicesAuthorizationExample_99212_preauth.json"
    )
    lines = [json.dumps(bundle), "{not json"]
    if preauth.exists():
        lines.append(json.dumps(json.loads(preauth.read_text())))
    path = tmp_path / "feed.ndjson"
    path.write_text("\n".join(lines) + "\n")
    code, visits, err = run("fhir", path)
    assert code == 1
    assert len(visits) == 1
    reasons = [e["reason"] for e in err[:-1]]
    assert "not_fhir" in reasons
    if preauth.exists():
        assert "not_a_visit" in reasons


def test_synthea_ndjson_reports_every_resource(tmp_path: Path) -> None:
    require_samples(SAMPLES)
    path = tmp_path / "synthea.ndjson"
    path.write_bytes(
        b"".join(f.read_bytes() for f in sorted((SAMPLES / "synthea").glob("*.ndjson")))
    )
    code, visits, err = run("fhir", path)
    assert code == 1 and visits == []
    assert err[-1]["summary"]["rejected"] == 28


def test_every_hl7_sample_converts_without_crashing(tmp_path: Path) -> None:
    require_samples(SAMPLES)
    path = tmp_path / "samples.hl7"
    files = sorted((SAMPLES / "hl7v2").glob("*"))
    path.write_bytes(b"\n\n".join(f.read_bytes() for f in files))  # blank line between
    code, visits, err = run("hl7", path)
    assert code == 1 and visits == []
    assert err[-1]["summary"]["rejected"] == 13  # 12 messages + the bare FT1 segment


def test_fhir_junk_never_raises() -> None:
    from ehr import parse_fhir

    for junk in ([1], 5, None, b"[]", b"{", {"resourceType": "Bundle", "type": "history"}):
        (rej,) = parse_fhir(junk, CONFIG, NOW).rejections
        assert rej.reason in ("not_fhir", "unsupported_type")
