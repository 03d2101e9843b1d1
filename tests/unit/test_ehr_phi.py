"""No patient data leaves the parsers: marker values in every PID field (and the FHIR Patient) must
not appear in parts, assembled visits, rejections, ACKs, convert output or logs."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ehr import (
    Rejection,
    add_part,
    assemble,
    convert_main,
    load_config,
    parse_fhir,
    parse_hl7v2,
    read_header,
    rejection_ack,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")
MARKERS = [
    "ZZPID2X",  # PID-2 patient id
    "ZZMRN77",  # PID-3 MRN
    "ZZAUTH9",  # PID-3 assigning authority
    "ZZALT44",  # PID-4 alternate id
    "ZZFAMILY",  # PID-5 name
    "ZZGIVEN",
    "ZZMAIDEN",  # PID-6
    "19230405",  # PID-7 birth date
    "ZZSTREET",  # PID-11 address
    "ZZCITY",
    "5559876543",  # PID-13 phone
    "ZZACCT88",  # PID-18 account number
    "987-65-4320",  # PID-19 SSN
    "ZZDRIVER",  # PID-20 driver's licence
]
PID = (
    "PID|1|ZZPID2X|ZZMRN77^^^ZZAUTH9^MR|ZZALT44|ZZFAMILY^ZZGIVEN\\Zbad||ZZMAIDEN|19230405|F|||"
    "1 ZZSTREET^^ZZCITY^ST^00000||(555)987-6543^^^^^555^9876543|||||ZZACCT88|987-65-4320|"
    "ZZDRIVER^ST"
)


def with_markers(name: str) -> bytes:
    raw = (FIX / name).read_bytes().decode()
    segments = [PID if s.startswith("PID|") else s for s in raw.split("\r")]
    return "\r".join(segments).encode()


def assert_clean(text: str) -> None:
    for marker in [*MARKERS, "9876543", "ZZ"]:
        assert marker not in text, marker


def test_parts_and_visit_hold_no_pid_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dft = parse_hl7v2(with_markers("dft_p03_pt_v1001.hl7"), CONFIG)
    mdm = parse_hl7v2(with_markers("mdm_t02_pt_daily_v1001.hl7"), CONFIG)
    assert not isinstance(dft, Rejection) and not isinstance(mdm, Rejection)
    assert dft.patient_ref == mdm.patient_ref
    event = assemble(add_part(add_part(None, dft), mdm))
    assert isinstance(event, dict)
    assert_clean(dft.model_dump_json() + mdm.model_dump_json() + json.dumps(event))
    assert_clean(caplog.text)


def test_patient_ref_is_keyed() -> None:
    raw = with_markers("dft_p03_pt_v1001.hl7")
    other = load_config(b"another-key-0123456789abc")
    a, b = parse_hl7v2(raw, CONFIG), parse_hl7v2(raw, other)
    assert not isinstance(a, Rejection) and not isinstance(b, Rejection)
    assert a.patient_ref != b.patient_ref


def test_rejections_and_acks_hold_no_pid_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    for broken in (
        with_markers("dft_p03_pt_v1001.hl7").replace(b"V1001^^^CLINIC01^VN", b""),
        with_markers("mdm_t02_pt_daily_v1001.hl7").replace(b"PTDAILY", b"ZZNOPE"),
        with_markers("dft_p03_pt_v1001.hl7").replace(b"|2.5.1", b"|2.5.1||||||ZZCHARSET"),
        with_markers("dft_p03_pt_v1001.hl7").replace(b"ZZMRN77^^^ZZAUTH9^MR", b"^^^ZZAUTH9^MR"),
    ):
        rej = parse_hl7v2(broken, CONFIG)
        assert isinstance(rej, Rejection)
        header = read_header(broken, "utf-8", CONFIG.profile.zone)
        assert not isinstance(header, Rejection)
        ack = rejection_ack(header, rej, control_id="A1", now=datetime(2026, 3, 2, tzinfo=UTC))
        texts += [rej.model_dump_json(), ack.decode()]
    text = "\n".join(texts).replace("ZZNOPE", "").replace("ZZCHARSET", "")
    assert_clean(text)
    assert_clean(caplog.text)


def test_convert_output_holds_no_pid_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "feed.hl7"
    path.write_bytes(
        with_markers("dft_p03_pt_v1001.hl7")
        + b"\n"
        + with_markers("mdm_t02_pt_daily_v1001.hl7")
        .replace(b"V1001^", b"V9^")
        .replace(b"PV1-", b"")
        + b"\nPID|ZZSTRAY|ZZMRN77\r"
    )
    out, err = io.BytesIO(), io.StringIO()
    convert_main("hl7", str(path), out, err, CONFIG)
    assert_clean(out.getvalue().decode() + err.getvalue() + caplog.text)


def test_fhir_patient_content_does_not_leak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bundle = json.loads((FIX / "fhir_bundle_pt_v4004.json").read_text())
    patient = bundle["entry"][0]["resource"]
    patient["identifier"][0]["value"] = "ZZMRN77"
    patient["name"] = [{"family": "ZZFAMILY", "given": ["ZZGIVEN"]}]
    patient["birthDate"] = "1923-04-05"
    patient["address"] = [{"line": ["1 ZZSTREET"], "city": "ZZCITY"}]
    patient["telecom"] = [{"system": "phone", "value": "5559876543"}]
    result = parse_fhir(bundle, CONFIG, datetime(2026, 3, 5, tzinfo=UTC))
    state = None
    for p in result.parts:
        state = add_part(state, p)
    assert state is not None
    event = assemble(state)
    bad = dict(bundle, entry=bundle["entry"][:1] + bundle["entry"][4:6])  # no Practitioner
    rejected = parse_fhir(bad, CONFIG, datetime(2026, 3, 5, tzinfo=UTC))
    text = json.dumps(event) + "".join(p.model_dump_json() for p in result.parts)
    text += "".join(r.model_dump_json() for r in rejected.rejections)
    assert rejected.rejections
    assert_clean(text.replace("1923-04-05", "") + caplog.text)
    assert "1923-04-05" not in text
