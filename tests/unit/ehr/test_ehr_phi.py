"""No patient data leaves the parsers: marker values in every PID field (and the FHIR Patient) must
not appear in parts, assembled visits, rejections, ACKs, convert output or logs."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

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

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")
MARKERS = [
    "ZZPID2X",  # PID-2 patient id
    "ZZMRN77",  # PID-3 MRN (CX.1)
    "ZZAUTH9",  # PID-3 assigning authority (CX.4)
    "ZZALT44",  # PID-4 alternate id
    "ZZFAMILY",  # PID-5 name (XPN.1 family)
    "ZZGIVEN",  # PID-5 name (XPN.2 given)
    "ZZMAIDEN",  # PID-6 mother's maiden name
    "19230405",  # PID-7 date/time of birth (YYYYMMDD)
    "ZZSTREET",  # PID-11 address (XAD.1)
    "ZZCITY",  # PID-11 address (XAD.3)
    "5559876543",  # PID-13 home phone (XTN.1 text; XTN.6/7 area code and number)
    "ZZACCT88",  # PID-18 account number
    "987-65-4320",  # PID-19 SSN
    "ZZDRIVER",  # PID-20 driver's licence (DLN.1)
]
# Every marker in the PID field HL7 v2.5 ch. 3.4.2 gives it (PID-8 sex, PID-9/10/12 and
# PID-14..17 empty); `\Zbad` is an unterminated escape in the given name on purpose.
PID = (
    "PID|1|ZZPID2X|ZZMRN77^^^ZZAUTH9^MR|ZZALT44|ZZFAMILY^ZZGIVEN\\Zbad|ZZMAIDEN|19230405|F|||"
    "1 ZZSTREET^^ZZCITY^ST^00000||(555)987-6543^^^^^555^9876543|||||ZZACCT88|987-65-4320|"
    "ZZDRIVER^ST"
)


def with_markers(name: str) -> bytes:
    raw = (FIX / name).read_bytes().decode()
    segments = [PID if s.startswith("PID|") else s for s in raw.split("\r")]
    return "\r".join(segments).encode()


def strict_pid(raw: bytes) -> Any:
    """The message's PID as hl7apy reads it, after STRICT validation as HL7 v2.5.1 (the
    fixtures' MSH-12): a message hl7apy refuses is not a fair test of the parsers."""
    msg = parse_message(raw.decode(), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    msg.validate()
    return next(s for s in msg.children if s.name == "PID")


@pytest.mark.parametrize("name", ["dft_p03_pt_v1001.hl7", "mdm_t02_pt_daily_v1001.hl7"])
def test_the_marker_messages_are_valid_hl7_with_each_marker_in_its_pid_field(name: str) -> None:
    pid = strict_pid(with_markers(name))
    # (field, component, marker), read back by hl7apy by name: an independent check of PID.
    for value, marker in [
        (pid.pid_2.cx_1, "ZZPID2X"),
        (pid.pid_3.cx_1, "ZZMRN77"),
        (pid.pid_3.cx_4, "ZZAUTH9"),
        (pid.pid_4.cx_1, "ZZALT44"),
        (pid.pid_5.xpn_1, "ZZFAMILY"),
        (pid.pid_6.xpn_1, "ZZMAIDEN"),
        (pid.pid_7.ts_1, "19230405"),
        (pid.pid_8, "F"),
        (pid.pid_11.xad_1, "1 ZZSTREET"),
        (pid.pid_11.xad_3, "ZZCITY"),
        (pid.pid_13.xtn_1, "(555)987-6543"),
        (pid.pid_13.xtn_7, "9876543"),
        (pid.pid_18.cx_1, "ZZACCT88"),
        (pid.pid_19, "987-65-4320"),
        (pid.pid_20.dln_1, "ZZDRIVER"),
    ]:
        assert value.to_er7() == marker
    assert pid.pid_5.xpn_2.to_er7().startswith("ZZGIVEN")
    assert pid.pid_7.datatype == "TS" and pid.pid_19.datatype == "ST"


def assert_clean(text: str) -> None:
    for marker in [*MARKERS, "9876543", "ZZ"]:
        assert marker not in text, marker


def test_parts_and_visit_hold_no_pid_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("dft_p03_pt_v1001.hl7", "mdm_t02_pt_daily_v1001.hl7"):
        strict_pid(with_markers(name))
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
        strict_pid(broken)  # refused by the profile, still well-formed HL7 v2.5.1
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
    dft = with_markers("dft_p03_pt_v1001.hl7")
    mdm = with_markers("mdm_t02_pt_daily_v1001.hl7").replace(b"V1001^", b"V9^")
    for message in (dft, mdm):
        strict_pid(message)
    # The MDM's visit has no charges: written partial. After a blank line, a stray PID (no
    # MSH): refused not_hl7.
    path.write_bytes(dft + b"\n" + mdm + b"\n\nPID|ZZSTRAY|ZZMRN77\r")
    out, err = io.BytesIO(), io.StringIO()
    assert convert_main("hl7", str(path), out, err, CONFIG) == 1
    assert len(out.getvalue().splitlines()) == 2
    assert [json.loads(x)["reason"] for x in err.getvalue().splitlines()[:-1]] == ["not_hl7"]
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
