"""HL7 v2 profile: fixtures (validated as real 2.5.1 by hl7apy STRICT), rejections, charsets,
framing, ACKs, and the profile file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr import (
    ChargePart,
    DocumentationPart,
    ProfileError,
    Rejection,
    build_ack,
    load_config,
    load_profile,
    mllp_frame,
    parse_hl7v2,
    read_header,
    rejection_ack,
    split_messages,
)
from ehr.ack import ack_code_for
from ehr.hl7time import parse_dtm

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")
NOW = datetime(2026, 3, 2, 16, 0, 1, tzinfo=UTC)
HL7_FIXTURES = sorted(FIX.glob("*.hl7"))


def fixture(name: str) -> bytes:
    return (FIX / name).read_bytes()


def strict_251(raw: bytes, encoding: str = "utf-8") -> None:
    msg = parse_message(
        raw.decode(encoding), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT
    )
    msg.validate()


@pytest.mark.parametrize("path", HL7_FIXTURES, ids=lambda p: p.name)
def test_every_fixture_is_strict_valid_hl7_251(path: Path) -> None:
    strict_251(path.read_bytes(), "latin-1" if "latin1" in path.name else "utf-8")


def test_therapy_dft_becomes_a_charge_part() -> None:
    part = parse_hl7v2(fixture("dft_p03_pt_v1001.hl7"), CONFIG)
    assert isinstance(part, ChargePart)
    assert part.visit.text == "CLINIC01:V1001"
    assert part.patient_ref.startswith("P-") and len(part.patient_ref) == 22
    assert part.date_of_service == date(2026, 3, 2)
    assert (part.discipline, part.payer.payer_id, part.payer.kind) == (
        "PT",
        "MEDICARE-B",
        "medicare",
    )
    assert (part.rendering_npi, part.rendering_credential) == ("1234567893", "PT")
    assert part.version.control_id == "DFT-1001-1"
    assert [(ln.line_id, ln.cpt, ln.units, ln.modifiers, ln.minutes) for ln in part.lines] == [
        ("1", "97110", 2, ["GP"], 33),  # PR1-7 minutes
        ("2", "97140", 1, ["GP", "59"], None),
    ]


def test_discipline_from_the_department_table_when_no_modifier() -> None:
    part = parse_hl7v2(fixture("dft_p03_ot_department.hl7"), CONFIG)
    assert isinstance(part, ChargePart)
    assert part.discipline == "OT" and part.lines[0].modifiers == []


def test_charges_and_credits_in_one_dft_are_rejected_with_the_reason() -> None:
    # Table 0017 CG and CD in one message: a DFT of charges replaces the visit's set, credits
    # are taken off it; one message cannot be both (docs/integration-hl7.md "Credits").
    rej = parse_hl7v2(fixture("dft_p03_charge_and_credit.hl7"), CONFIG)
    assert isinstance(rej, Rejection)
    assert rej.reason == "unsupported_transaction"
    assert "send the visit's corrected charges as a new DFT" in rej.detail
    assert (rej.problems[0].segment, rej.problems[0].field) == ("FT1", 6)


def test_mdm_daily_note_becomes_documentation() -> None:
    part = parse_hl7v2(fixture("mdm_t02_pt_daily_v1001.hl7"), CONFIG)
    assert isinstance(part, DocumentationPart)
    assert part.source_id == "mdm:DOC-1001-DAILY"
    assert part.minutes_by_cpt == {"97110": 33, "97140": 7}
    assert (part.total_timed_minutes, part.total_treatment_minutes) == (40, 45)
    (doc,) = part.documents
    assert (doc.kind, doc.doc_id, doc.author_credential) == ("daily_note", "DOC-1001-DAILY", "PT")
    assert doc.signed_at == datetime(2026, 3, 2, 16, 55, tzinfo=UTC)


def test_unsigned_report_and_evn1_disagreeing_with_msh9() -> None:
    part = parse_hl7v2(fixture("mdm_t02_ppt_unsigned_evn_t10.hl7"), CONFIG)
    assert isinstance(part, DocumentationPart) and part.status == "active"
    (doc,) = part.documents
    assert (doc.kind, doc.cpt, doc.signed_at) == ("written_report", "97750", None)


def test_t11_cancels_the_document() -> None:
    part = parse_hl7v2(fixture("mdm_t11_cancel_v1001.hl7"), CONFIG)
    assert isinstance(part, DocumentationPart)
    assert (part.status, part.source_id, part.documents) == ("cancelled", "mdm:DOC-1001-DAILY", [])


def test_txa19_canceled_in_a_t02_withdraws_the_document() -> None:
    raw = fixture("mdm_t02_pt_daily_v1001.hl7").replace(b"|LA||AV|", b"|LA||CA|")
    part = parse_hl7v2(raw, CONFIG)
    assert isinstance(part, DocumentationPart) and part.status == "cancelled"


def test_oru_with_profile_minutes() -> None:
    part = parse_hl7v2(fixture("oru_r01_pt_minutes_v1001.hl7"), CONFIG)
    assert isinstance(part, DocumentationPart)
    assert (part.source_id, part.documents) == ("oru:RES-1001", [])
    assert part.minutes_by_cpt == {"97110": 33, "97140": 7}


@pytest.mark.parametrize("name", ["dft_p03_latin1.hl7", "dft_p03_utf8.hl7"])
def test_msh18_charset_decodes_the_bytes(name: str) -> None:
    part = parse_hl7v2(fixture(name), CONFIG)
    assert isinstance(part, ChargePart)
    assert part.visit.visit_number == "V3003"


def test_bytes_not_valid_in_the_declared_charset_are_rejected() -> None:
    raw = fixture("dft_p03_latin1.hl7").replace(b"8859/1", b"UNICODE UTF-8")
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "bad_charset"
    assert "MSH-18" in rej.detail
    rej = parse_hl7v2(raw.replace(b"UNICODE UTF-8", b"KLINGON"), CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "bad_charset"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ((b"DFT^P03^DFT_P03", b"ADT^A01^ADT_A01"), "unsupported_type"),
        ((b"|P|2.5.1", b"|P|9.9"), "unsupported_version"),
        ((b"FT1|1|TX1||20260302090500", b"FT1|1|TX1||2026XX02"), "bad_value"),
        ((b"|2||||||PT^^^CLINIC01", b"|2.5||||||PT^^^CLINIC01"), "bad_value"),
        ((b"V1001^^^CLINIC01^VN", b""), "missing_field"),
        ((b"MRN12345^^^CLINIC01^MR", b""), "missing_field"),
        ((b"MCB^Medicare Part B^L|CMS^^^CMS^NIIP", b"ACME^Acme^L|ACME"), "unmapped_code"),
        ((b"|20260302160000||DFT", b"|||DFT"), "missing_field"),
    ],
)
def test_rejections_name_the_field(edit: tuple[bytes, bytes], reason: str) -> None:
    raw = fixture("dft_p03_pt_v1001.hl7").replace(*edit)
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection), rej
    assert rej.reason == reason
    assert rej.problems[0].segment in ("MSH", "PV1", "PID", "FT1", "IN1")


def test_not_hl7_never_raises() -> None:
    for junk in (b"", b"hello", b"\x00\xff" * 10, b"MSH", b"MSH|", b"PID|1||x"):
        rej = parse_hl7v2(junk, CONFIG)
        assert isinstance(rej, Rejection)


def test_unknown_sender_when_facilities_are_listed() -> None:
    profile = load_profile().model_copy(update={"accepted_facilities": ["OTHERCLINIC"]})
    config = CONFIG.model_copy(update={"profile": profile})
    rej = parse_hl7v2(fixture("dft_p03_pt_v1001.hl7"), config)
    assert isinstance(rej, Rejection) and rej.reason == "unknown_sender"


# ---- framing --------------------------------------------------------------------------------


def test_split_mllp_blank_line_and_one_per_line_files_alike() -> None:
    a, b = fixture("dft_p03_pt_v1001.hl7"), fixture("mdm_t02_pt_daily_v1001.hl7")
    framed = mllp_frame(a) + mllp_frame(b)
    blank_lines = a.replace(b"\r", b"\n") + b"\n" + b.replace(b"\r", b"\n")
    one_per_line = a.rstrip(b"\r") + b"\n" + b.rstrip(b"\r") + b"\n"
    for data in (framed, blank_lines, one_per_line, a + b):
        assert split_messages(data) == [a, b]


def test_split_reports_orphan_segments() -> None:
    (rej, msg) = split_messages(b"PID|1||x\r" + fixture("dft_p03_pt_v1001.hl7"))
    assert isinstance(rej, Rejection) and rej.reason == "not_hl7"
    assert isinstance(msg, bytes)


# ---- ACKs -----------------------------------------------------------------------------------


def test_aa_ack_is_valid_and_echoes_msh10() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    header = read_header(raw, "utf-8", CONFIG.profile.zone)
    assert not isinstance(header, Rejection)
    ack = build_ack(header, "AA", control_id="ACK-1", now=NOW)
    strict_251(ack, "ascii")
    segments = ack.decode().split("\r")
    assert segments[0].startswith(
        "MSH|^~\\&|THERAPY-COMPLIANCE|BILLING|PTEMR|CLINIC01|20260302160001"
    )
    assert "|ACK^P03^ACK|ACK-1|P|2.5.1" in segments[0]
    assert segments[1] == "MSA|AA|DFT-1001-1|"


def test_ae_ack_has_msa3_and_one_err_per_problem() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7").replace(b"V1001^^^CLINIC01^VN", b"")
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection)
    assert ack_code_for(rej) == "AE"
    header = read_header(raw, "utf-8", CONFIG.profile.zone)
    assert not isinstance(header, Rejection)
    ack = rejection_ack(header, rej, control_id="ACK-2", now=NOW)
    strict_251(ack, "ascii")
    msa, err = ack.decode().split("\r")[1:3]
    assert msa.startswith("MSA|AE|DFT-1001-1|missing_field: PV1-19")
    assert err.startswith("ERR||PV1^1^19|101^Required field missing^HL70357|E|")


def test_ar_ack_for_a_system_error_and_escaping() -> None:
    header = read_header(fixture("mdm_t02_pt_daily_v1001.hl7"), "utf-8", CONFIG.profile.zone)
    assert not isinstance(header, Rejection)
    ack = build_ack(header, "AR", control_id="ACK-3", now=NOW, text="broker down | retry ^ é")
    strict_251(ack, "ascii")
    text = ack.decode()
    assert "|ACK^T02^ACK|" in text
    assert "MSA|AR|MDM-1001-1|broker down \\F\\ retry \\S\\ \\XC3A9\\" in text
    assert "ERR|||207^Application internal error^HL70357|E" in text


def test_ack_for_a_v23_sender_uses_err1() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7").replace(b"|P|2.5.1", b"|P|2.3")
    rej = parse_hl7v2(raw.replace(b"FT1|1|TX1||20260302090500", b"FT1|1|TX1||"), CONFIG)
    header = read_header(raw, "utf-8", CONFIG.profile.zone)
    assert isinstance(rej, Rejection) and not isinstance(header, Rejection)
    ack = rejection_ack(header, rej, control_id="A", now=NOW).decode()
    assert "ERR|FT1^1^4^101&Required field missing&HL70357" in ack
    # v2.3 has no MSH-9.3 (hl7apy STRICT cannot load a 2.3 ACK without it, so check by hand).
    assert "|ACK^P03|A|P|2.3" in ack


# ---- time and profile -----------------------------------------------------------------------


def test_dtm_offsets_and_profile_zone() -> None:
    from zoneinfo import ZoneInfo

    # +0215 read as written (11:26 - 2:15 = 09:11 UTC), emitted in the clinic's zone (UTC here;
    # docs/integration-hl7.md "Times and dates").
    assert parse_dtm("202108181126+0215", UTC).isoformat() == "2021-08-18T09:11:00+00:00"
    chicago = parse_dtm("20260302090000", ZoneInfo("America/Chicago"))
    assert chicago.astimezone(UTC).hour == 15
    for bad in ("2026", "20261302", "2026030209+2500", "abc"):
        if bad == "2026":
            assert parse_dtm(bad, UTC).year == 2026
            continue
        with pytest.raises(ValueError):
            parse_dtm(bad, UTC)


def test_profile_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[departments]\nRAD = "XRAY"\n')
    with pytest.raises(ProfileError, match=r"departments\.RAD"):
        load_profile(path)
    path.write_text('timezone = "Mars/Olympus"\n')
    with pytest.raises(ProfileError, match="timezone"):
        load_profile(path)
    path.write_text("[payers\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(path)
    path.write_text('[obx]\ncpt_minutes = "X"\ntotal_timed_minutes = "X"\n')
    with pytest.raises(ProfileError, match="share one code"):
        load_profile(path)
    path.write_text("surprise = 1\n")
    with pytest.raises(ProfileError, match="surprise"):
        load_profile(path)
    with pytest.raises(ProfileError, match="16 bytes"):
        load_config(b"short")


def test_shipped_profile_loads() -> None:
    profile = load_profile()
    assert profile.departments["PT"] == "PT"
    assert profile.documents.types["PTPPT"].cpt == "97750"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_parser_never_raises_on_mangled_messages(data: st.DataObject) -> None:
    raw = bytearray(fixture("dft_p03_pt_v1001.hl7"))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from(b"|^~\\&\r\n0aZ\x00\xff"))
    result = parse_hl7v2(bytes(raw), CONFIG)
    assert isinstance(result, ChargePart | DocumentationPart | Rejection)
