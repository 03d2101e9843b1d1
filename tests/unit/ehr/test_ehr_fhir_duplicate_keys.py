"""Duplicate keys in FHIR JSON (docs/rules.md "Input hygiene"): a resource or bundle whose JSON
names a key twice in one object is refused `not_fhir`, the detail naming the key's path and
never a value, on every entry point (the FHIR inbound topic's parse stage, `convert` with a
bundle file, an NDJSON of bundles, an NDJSON bulk export of bare resources).

RFC 8259 sec. 4: with duplicate names "the behavior of software that receives such an object is
unpredictable" (Python's json keeps the last value, other parsers the first): a bundle one
system reads with one birth date or CPT and another with a different one must not pass.

The oracle is independent of the code under test: each duplicate is written into the fixture's
text by hand, and the expected path is spelt out here from the fixture's layout (entry 0 is the
Patient, entry 1 the Practitioner).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ehr import convert_main, load_config, parse_fhir
from runtime.settings import Settings
from schemas.ehr_deadletter import EhrDeadLetter
from streams.ehr_stages import EhrParser
from streams.metrics import Metrics
from streams.processor import Record, guarded, scratch

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
KEY = "test-key-0123456789abcdef"
CONFIG = load_config(KEY.encode())
NOW = datetime(2026, 3, 5, tzinfo=UTC)
BUNDLE = (FIX / "fhir_bundle_pt_v4004.json").read_bytes()
BOM = b"\xef\xbb\xbf"

BIRTH = b'"birthDate": "1970-01-01"'
NPI = b'"value": "1234567893"'
# (name, the bundle's text with one key written twice, the path the detail must name)
CASES = [
    (
        "patient birthDate",
        BUNDLE.replace(BIRTH, b'"birthDate": "1969-12-31", ' + BIRTH, 1),
        "entry.0.resource.birthDate",
    ),
    (
        "same value twice",
        BUNDLE.replace(BIRTH, BIRTH + b", " + BIRTH, 1),
        "entry.0.resource.birthDate",
    ),
    (
        "key spelt with an escape",
        BUNDLE.replace(BIRTH, b'"birth\\u0044ate": "1969-12-31", ' + BIRTH, 1),
        "entry.0.resource.birthDate",
    ),
    (
        "practitioner NPI",
        BUNDLE.replace(NPI, b'"value": "1245319599", ' + NPI, 1),
        "entry.1.resource.identifier.0.value",
    ),
    (
        "bundle type",
        BUNDLE.replace(b'"type": "transaction"', b'"type": "batch", "type": "transaction"', 1),
        "type",
    ),
]


def test_the_cases_really_hold_a_duplicate_and_are_otherwise_valid() -> None:
    # Each case is valid JSON that Python reads (last value wins) as the fixture itself: the
    # duplicate is the only thing wrong with it.
    plain = json.loads(BUNDLE)
    for name, text, _path in CASES:
        assert text != BUNDLE, name
        assert json.loads(text) == plain, name
    assert parse_fhir(BUNDLE, CONFIG, NOW).parts


@pytest.mark.parametrize(("name", "text", "path"), CASES, ids=[c[0] for c in CASES])
def test_a_bundle_with_a_duplicate_key_is_refused_naming_its_path(
    name: str, text: bytes, path: str
) -> None:
    for data in (text, BOM + text, text.decode()):
        result = parse_fhir(data, CONFIG, NOW)
        assert result.parts == (), name
        (rejection,) = result.rejections
        assert rejection.reason.value == "not_fhir"
        assert f"{path}: duplicate key" in rejection.detail


def test_the_detail_names_keys_never_values() -> None:
    text = BUNDLE.replace(b'"family": "Doe"', b'"family": "Roe", "family": "Doe"', 1)
    (rejection,) = parse_fhir(text, CONFIG, NOW).rejections
    assert "entry.0.resource.name.0.family: duplicate key" in rejection.detail
    for value in ("Roe", "Doe", "Jane", "MRN12345", "1970"):
        assert value not in rejection.detail


def test_a_bare_resource_with_a_duplicate_key_is_refused() -> None:
    patient = json.dumps(json.loads(BUNDLE)["entry"][0]["resource"]).encode()
    assert b'"birthDate": "1970-01-01"' in patient
    result = parse_fhir(patient.replace(BIRTH, BIRTH + b", " + BIRTH), CONFIG, NOW)
    (rejection,) = result.rejections
    assert rejection.reason.value == "not_fhir" and "birthDate: duplicate key" in rejection.detail


def test_the_fhir_inbound_stage_dead_letters_it() -> None:
    settings = Settings.from_env({"TC_EHR_PATIENT_KEY": KEY})
    parser = EhrParser(settings, load_config(KEY), Metrics())
    text = CASES[0][1]
    (out,) = guarded(
        parser, Record(settings.topic_fhir_inbound, 0, 3, b"k", text, 1_772_470_800_000), scratch()
    )
    assert out.topic == settings.topic_ehr_deadletter
    letter = EhrDeadLetter.model_validate_json(out.value or b"")
    assert letter.reason == "not_fhir" and letter.format == "fhir"
    assert "entry.0.resource.birthDate: duplicate key" in letter.detail
    assert "1969" not in letter.detail and "1970" not in letter.detail


def convert(tmp_path: Path, data: bytes) -> tuple[int, list[str], list[dict[str, object]]]:
    path = tmp_path / "in.json"
    path.write_bytes(data)
    out, err = io.BytesIO(), io.StringIO()
    code = convert_main("fhir", str(path), out, err, CONFIG, now=NOW)
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    return code, out.getvalue().decode().splitlines(), [r for r in lines if "reason" in r]


def test_convert_refuses_a_bundle_file_with_a_duplicate_key(tmp_path: Path) -> None:
    code, visits, rejections = convert(tmp_path, BUNDLE)
    assert code == 0 and visits and rejections == []
    code, visits, rejections = convert(tmp_path, CASES[0][1])
    assert code == 1 and visits == []
    assert [r["reason"] for r in rejections] == ["not_fhir"]
    assert "entry.0.resource.birthDate: duplicate key" in str(rejections[0]["detail"])


def test_convert_refuses_a_duplicate_in_an_ndjson_line(tmp_path: Path) -> None:
    one_line = json.dumps(json.loads(BUNDLE)).encode()
    dup_line = one_line.replace(b'"birthDate": "1970-01-01"', b'"birthDate": "1", ' + BIRTH)
    assert dup_line != one_line
    # An NDJSON of bundles: line 2 refused, line 1 converted.
    code, visits, rejections = convert(tmp_path, one_line + b"\n" + dup_line + b"\n")
    assert code == 1 and visits
    assert [(r["message"], r["reason"]) for r in rejections] == [(2, "not_fhir")]
    assert "entry.0.resource.birthDate: duplicate key" in str(rejections[0]["detail"])
    # A bulk export of bare resources: the resource with the duplicate is refused, by line.
    resources = [json.dumps(e["resource"]).encode() for e in json.loads(BUNDLE)["entry"]]
    assert BIRTH in resources[0]
    resources[0] = resources[0].replace(BIRTH, BIRTH + b", " + BIRTH)
    code, _visits, rejections = convert(tmp_path, b"\n".join(resources) + b"\n")
    assert code == 1
    refused = [r for r in rejections if "duplicate key" in str(r["detail"])]
    assert [(r["message"], r["reason"]) for r in refused] == [(1, "not_fhir")]
    assert "birthDate: duplicate key" in str(refused[0]["detail"])
