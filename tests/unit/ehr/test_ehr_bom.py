"""A UTF-8 byte-order mark on the EHR path (docs/rules.md "Input hygiene"): the behaviour of
each entry point, made explicit.

- HL7 v2 message (MLLP gateway, inbound topic): refused `not_hl7`, the detail names the BOM (a
  message starts with its MSH segment, HL7 v2.5 ch. 2; before this it was "does not start with
  an MSH segment").
- FHIR JSON record (inbound topic): accepted, the BOM skipped (RFC 8259 sec. 8.1: parsers "MAY
  ignore the presence of a byte order mark rather than treating it as an error").
- `convert` file: a BOM at the very start of the file is skipped, as `audit` skips it.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from ehr import (
    ChargePart,
    Rejection,
    convert_main,
    load_config,
    mllp_frame,
    parse_hl7v2,
    split_messages,
)
from ehr.fhir import parse_fhir

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")
NOW = datetime(2026, 3, 5, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"


def test_hl7_message_with_a_bom_is_refused_naming_it() -> None:
    raw = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
    assert isinstance(parse_hl7v2(raw, CONFIG), ChargePart)
    result = parse_hl7v2(BOM + raw, CONFIG)
    assert isinstance(result, Rejection)
    assert result.reason.value == "not_hl7"
    assert "starts with a UTF-8 byte-order mark" in result.detail


def test_fhir_record_with_a_bom_is_read_as_without() -> None:
    raw = (FIX / "fhir_bundle_pt_v4004.json").read_bytes()
    plain = parse_fhir(raw, CONFIG, NOW)
    with_bom = parse_fhir(BOM + raw, CONFIG, NOW)
    assert plain.parts and not plain.rejections
    assert with_bom.parts == plain.parts and not with_bom.rejections


def convert(source: str, path: Path) -> tuple[int, list[str], str]:
    out, err = io.BytesIO(), io.StringIO()
    code = convert_main(source, str(path), out, err, CONFIG, now=NOW)  # type: ignore[arg-type]
    # event_id and occurred_at are derived from the parts, so equal inputs give equal lines.
    return code, out.getvalue().decode().splitlines(), err.getvalue()


def test_convert_skips_a_bom_at_the_start_of_an_hl7_file(tmp_path: Path) -> None:
    feed = (FIX / "dft_p03_pt_v1001.hl7").read_bytes().replace(b"\r", b"\n") + b"\n"
    feed += (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes().replace(b"\r", b"\n")
    plain, bom = tmp_path / "plain.hl7", tmp_path / "bom.hl7"
    plain.write_bytes(feed)
    bom.write_bytes(BOM + feed)
    expected = convert("hl7", plain)
    assert expected[0] == 0 and len(expected[1]) == 1
    assert convert("hl7", bom) == expected
    # Inside an MLLP block the BOM is the message's own: refused, named.
    framed = tmp_path / "framed.hl7"
    framed.write_bytes(mllp_frame(BOM + (FIX / "dft_p03_pt_v1001.hl7").read_bytes()))
    code, _, err = convert("hl7", framed)
    assert code == 1
    assert "byte-order mark" in json.loads(err.splitlines()[0])["detail"]


def test_convert_skips_a_bom_at_the_start_of_a_fhir_file(tmp_path: Path) -> None:
    bundle = (FIX / "fhir_bundle_pt_v4004.json").read_bytes()
    plain, bom = tmp_path / "plain.json", tmp_path / "bom.json"
    plain.write_bytes(bundle)
    bom.write_bytes(BOM + bundle)
    expected = convert("fhir", plain)
    assert expected[0] == 0 and expected[1]
    assert convert("fhir", bom) == expected


def test_a_bom_before_a_later_msh_on_the_next_line_is_refused_and_the_previous_message_kept(
    tmp_path: Path,
) -> None:
    # Messages one per line (CR between segments, LF between messages): the second one is
    # preceded by a BOM (a concatenation of Windows exports). It must be refused on its own,
    # named, and must not be read as segments of the DFT before it.
    dft = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
    mdm = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()
    data = dft.rstrip(b"\r") + b"\n" + BOM + mdm.rstrip(b"\r") + b"\n"
    first, second = split_messages(data)
    assert first == dft  # the DFT, byte for byte, and nothing of the MDM
    assert isinstance(second, bytes) and second.startswith(BOM + b"MSH|")
    refused = parse_hl7v2(second, CONFIG)
    assert isinstance(refused, Rejection) and refused.reason.value == "not_hl7"
    assert "byte-order mark" in refused.detail
    # The same with segments on lines (LF) and no blank line between the messages.
    lines = dft.replace(b"\r", b"\n") + BOM + mdm.replace(b"\r", b"\n")
    first, second = split_messages(lines)
    assert first == dft and isinstance(second, bytes) and second.startswith(BOM + b"MSH|")
    # Through convert: the DFT gives its visit (parts_missing: no document was accepted), the
    # BOM message is one rejection naming the BOM, not a silently merged segment run.
    path = tmp_path / "bom2.hl7"
    path.write_bytes(data)
    code, lines_out, err = convert("hl7", path)
    rejections = [json.loads(line) for line in err.splitlines() if '"message"' in line]
    assert code == 1
    assert [r["message"] for r in rejections] == [2]
    assert "byte-order mark" in rejections[0]["detail"]
    assert len(lines_out) == 1


def test_two_messages_in_one_block_are_refused_not_half_read() -> None:
    # HL7 v2.5 ch. 2 / the MLLP transport: one block carries one message. Before, the second
    # message of a block was dropped without a word (its part never reached the join).
    dft = (FIX / "dft_p03_pt_v1001.hl7").read_bytes().rstrip(b"\r\n")
    mdm = sorted(FIX.glob("mdm_*.hl7"))[0].read_bytes().rstrip(b"\r\n")
    for second in (mdm, BOM + mdm):
        result = parse_hl7v2(dft + b"\r" + second + b"\r", CONFIG)
        assert isinstance(result, Rejection)
        assert result.reason.value == "not_hl7"
        assert "2 messages" in result.detail
    assert isinstance(parse_hl7v2(dft + b"\r", CONFIG), ChargePart)
