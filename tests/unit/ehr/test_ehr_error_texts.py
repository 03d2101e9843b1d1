"""Issue 20 item 9: error texts that point the right way.

- a bad MSH-2 (encoding characters) is named as such (HL7 v2.5.1 ch. 2.5.4 figure 2-1, 2.14.9.2),
  not "does not start with an MSH segment";
- an MSH cut by a line break says so, not "MSH-12 ''";
- a bare NDJSON resource's rejection names its (1-based) line, not line 0;
- TXA-4 empty: the date of service is TXA-6 (origination date/time) before PV1-44 (admit
  date/time), HL7 v2.5.1 ch. 9.6.1.4, 9.6.1.6, ch. 3.4.3.44.
Built messages are checked with hl7apy (STRICT v2.5.1) where they are valid HL7."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ehr import (
    DocumentationPart,
    Rejection,
    convert_main,
    parse_hl7v2,
    parse_hl7v2_parts,
    read_header,
    split_messages,
)
from tests.unit.ehr.ehrtest import CONFIG, FIX, strict

MDM = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()
NOW = datetime(2026, 3, 5, tzinfo=UTC)


# ---- MSH-2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "enc",
    [
        b"^^^^",  # the same character for every delimiter
        b"^~^&",  # escape = component separator
        b"abcd",  # letters would be read as data
        b"^ \\&",  # a space
        b"",  # none at all
        b"^~\\&xy",  # six characters
        b"^~\\&\x01",  # a control character
    ],
)
def test_bad_msh2_is_named(enc: bytes) -> None:
    raw = MDM.replace(b"MSH|^~\\&|", b"MSH|" + enc + b"|", 1)
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "not_hl7"
    assert rej.detail.startswith("MSH-2 (encoding characters)")
    assert "does not start with an MSH segment" not in rej.detail
    assert (rej.problems[0].segment, rej.problems[0].field) == ("MSH", 2)
    # The gateway's header reader (for the ACK) says the same when it cannot parse at all.
    header = read_header(raw, "utf-8", CONFIG.profile.zone)
    if isinstance(header, Rejection):
        assert header.detail.startswith("MSH-2")


@pytest.mark.parametrize("enc", [b"^~", b"^~\\", b"^~\\&#"])
def test_short_and_v27_msh2_are_accepted(enc: bytes) -> None:
    # Figure 2-1: the escape and subcomponent characters may be omitted when unused; v2.7 adds a
    # fifth, the truncation character (ch. 2.5.5.2).
    part = parse_hl7v2(MDM.replace(b"MSH|^~\\&|", b"MSH|" + enc + b"|", 1), CONFIG)
    assert isinstance(part, DocumentationPart)


def test_bad_msh1_is_named() -> None:
    rej = parse_hl7v2(MDM.replace(b"MSH|^~\\&|", b"MSHA^~\\&A", 1), CONFIG)
    assert isinstance(rej, Rejection) and rej.detail.startswith("MSH-1 (field separator) 'A'")


def test_not_hl7_at_all_still_says_so() -> None:
    rej = parse_hl7v2(b"PID|1||X\r", CONFIG)
    assert isinstance(rej, Rejection) and "does not start with an MSH segment" in rej.detail


# ---- MSH cut across lines ----------------------------------------------------------------------


@pytest.mark.parametrize("sep", [b"\r", b"\n", b"\r\n"])
def test_msh_cut_by_a_line_break_says_so(sep: bytes) -> None:
    msh = strict(MDM).children[0]
    assert msh.msh_7.to_er7() == "20260302170000" and msh.msh_12.to_er7() == "2.5.1"
    text = MDM.replace(b"|20260302170000||MDM", b"|20260302170000" + sep + b"||MDM", 1)
    # As a file reaches the parser (convert, the demo sender): LF and CRLF end segments too.
    (raw,) = split_messages(text)
    assert isinstance(raw, bytes)
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "not_hl7"
    assert "MSH segment is cut by a line break after MSH-7" in rej.detail
    assert "MSH-12 ''" not in rej.detail
    assert (rej.problems[0].segment, rej.problems[0].field) == ("MSH", 8)


def test_msh_that_just_ends_early_says_which_fields_are_missing() -> None:
    raw = MDM.replace(b"|MDM-1001-1|P|2.5.1", b"", 1)  # MSH ends after MSH-9
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection)
    assert rej.detail.startswith("the MSH segment ends after MSH-9: MSH-9, MSH-10 and MSH-12")


@pytest.mark.parametrize("sep", [b"\r", b"\n", b"\r\n"])
def test_a_line_break_right_before_msh12_is_a_cut_not_msh12_empty(sep: bytes) -> None:
    # `...|P|` + line break + `2.5.1`: MSH-12 (version id, HL7 v2.5.1 ch. 2.14.9.12) is empty only
    # because the segment ended (ch. 2.5.4: CR ends a segment); "2.5.1" has no segment ID (three
    # upper-case letters/digits, ch. 2.5.2), so the MSH was cut after MSH-11.
    msh = strict(MDM).children[0]
    assert (msh.msh_11.to_er7(), msh.msh_12.to_er7()) == ("P", "2.5.1")
    text = MDM.replace(b"|P|2.5.1", b"|P|" + sep + b"2.5.1", 1)
    (raw,) = split_messages(text)
    assert isinstance(raw, bytes)
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "not_hl7", rej
    assert "MSH segment is cut by a line break after MSH-11" in rej.detail
    assert "MSH-12 ''" not in rej.detail
    assert (rej.problems[0].segment, rej.problems[0].field) == ("MSH", 12)


def test_convert_names_a_line_break_before_msh12_in_an_lf_file(tmp_path: Path) -> None:
    # A file whose segments end with LF (as editors write them), cut right before MSH-12.
    text = MDM.replace(b"\r", b"\n").replace(b"|P|2.5.1", b"|P|\n2.5.1", 1)
    path = tmp_path / "cut.hl7"
    path.write_bytes(text)
    out, err = io.BytesIO(), io.StringIO()
    assert convert_main("hl7", str(path), out, err, CONFIG, now=NOW) == 1
    (rejected,) = [json.loads(x) for x in err.getvalue().splitlines() if '"reason"' in x]
    assert rejected["reason"] == "not_hl7"
    assert "cut by a line break after MSH-11" in rejected["detail"]
    assert "MSH-12 ''" not in rejected["detail"] and out.getvalue() == b""


def test_an_empty_msh12_is_still_a_version_problem() -> None:
    rej = parse_hl7v2(MDM.replace(b"|P|2.5.1", b"|P|", 1), CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "unsupported_version"


# ---- NDJSON line numbers -----------------------------------------------------------------------


def test_bare_ndjson_rejections_name_their_lines(tmp_path: Path) -> None:
    bad_procedure = {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "subject": {"reference": "Patient/x"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]},
    }
    invalid = {"resourceType": "Procedure", "id": "p2", "status": "not-a-status"}
    patient = {"resourceType": "Patient", "id": "x"}
    lines = [json.dumps(patient), "", json.dumps(bad_procedure), json.dumps(invalid)]
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(lines) + "\n")
    out, err = io.BytesIO(), io.StringIO()
    assert convert_main("fhir", str(path), out, err, CONFIG, now=NOW) == 1
    rejected = [json.loads(x) for x in err.getvalue().splitlines() if '"message"' in x]
    by_line = {r["message"]: r for r in rejected}
    assert sorted(by_line) == [3, 4]  # 1-based lines of the file, the blank line 2 counted
    assert by_line[3]["reason"] == "no_procedure_code"
    assert by_line[3]["detail"].startswith("line 3 Procedure")
    assert by_line[4]["reason"] == "not_fhir" and by_line[4]["detail"].startswith("line 4:")


# ---- TXA date order ----------------------------------------------------------------------------


def txa_dates(txa4: bytes, txa6: bytes, pv1_44: bytes) -> bytes:
    raw = MDM.replace(b"|TX|20260302090000||20260302165000|", b"|TX|" + txa4 + b"||" + txa6 + b"|")
    pv1 = b"PV1|1|O|PT^^^CLINIC01|||||||PT|||||||||V1001^^^CLINIC01^VN"
    return raw.replace(pv1, pv1 + b"|" * 25 + pv1_44)


@pytest.mark.parametrize(
    ("txa4", "txa6", "pv1_44", "expected"),
    [
        (b"20260302090000", b"20260303080000", b"20260201", date(2026, 3, 2)),  # TXA-4
        (b"", b"20260303080000", b"20260201", date(2026, 3, 3)),  # TXA-6 before PV1-44
        (b"", b"", b"20260201", date(2026, 2, 1)),  # PV1-44 last
    ],
)
def test_date_of_service_order(txa4: bytes, txa6: bytes, pv1_44: bytes, expected: date) -> None:
    raw = txa_dates(txa4, txa6, pv1_44)
    msg = strict(raw)
    txa = next(s for s in msg.children if s.name == "TXA")
    pv1 = next(s for s in msg.children if s.name == "PV1")
    assert (txa.txa_4.to_er7(), txa.txa_6.to_er7()) == (txa4.decode(), txa6.decode())
    assert pv1.pv1_44.to_er7() == pv1_44.decode()
    part = parse_hl7v2(raw, CONFIG)
    assert isinstance(part, DocumentationPart)
    assert part.date_of_service == expected
    # The document's own date stays TXA-4 (the activity date) only.
    assert part.documents[0].document_date == (expected if txa4 else None)


def test_bad_txa6_is_named_when_it_is_the_date_read() -> None:
    rej = parse_hl7v2(txa_dates(b"", b"2026", b"20260201"), CONFIG)
    assert isinstance(rej, Rejection) and "TXA-6 is not a date" in rej.detail


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_segments_ended_by_lf_or_crlf_read_as_with_cr(newline: bytes) -> None:
    # HL7 v2 ends segments with CR (hex 0D); senders and files often use LF or CRLF. `convert`
    # splits a file on all three, so the gateway and the worker (parse_hl7v2_parts on one
    # message's bytes) must read the same message the same way, not refuse it with a misleading
    # "MSH-12 '2.5.1\nEVN'" (issue 20 item 9; "convert ... the same answers as the worker").
    cr = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
    assert b"\n" not in cr
    other = cr.replace(b"\r", newline)
    expected = parse_hl7v2_parts(cr, CONFIG)
    assert not isinstance(expected, Rejection), expected
    assert parse_hl7v2_parts(other, CONFIG) == expected
