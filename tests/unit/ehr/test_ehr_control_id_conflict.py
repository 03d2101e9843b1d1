"""Issue 20 item 6: the same MSH-10 with different content within a visit's join record.

HL7 v2.5.1 ch. 2.14.9.10: MSH-10 (message control id) "uniquely identifies the message"; the
receiver echoes it in MSA-2. Two messages with one control id and different content are a sender
fault: the second is refused (control_id_conflict) naming the control id and both content
digests, and never replaces the first; an identical re-send stays an idempotent duplicate.
Messages built here are checked with hl7apy (STRICT v2.5.1): MSH-7, MSH-10 and TXA-22 PPN.15."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from ehr import (
    ChargePart,
    DocumentationPart,
    VisitState,
    add_part,
    conflict,
    convert_main,
    load_config,
    mllp_frame,
    parse_hl7v2,
)

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")
MDM_RAW = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()
DFT_RAW = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
SIGNED = b"^^20260302165500"
#: The same message (MSH-7 20260302170000, MSH-10 MDM-1001-1), signed ten minutes later.
MDM_RESIGNED_RAW = MDM_RAW.replace(SIGNED, b"^^20260302170500")
EDIT_RAW = (FIX / "mdm_t08_pt_daily_v1001_edit.hl7").read_bytes()


def strict(raw: bytes) -> Any:
    msg = parse_message(raw.decode(), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    msg.validate()
    return msg


def part(raw: bytes) -> ChargePart | DocumentationPart:
    result = parse_hl7v2(raw, CONFIG)
    assert isinstance(result, ChargePart | DocumentationPart), result
    return result


def sha256(p: ChargePart | DocumentationPart) -> str:
    return hashlib.sha256(p.model_dump_json().encode()).hexdigest()


def test_the_two_messages_share_msh7_and_msh10_and_differ_in_the_signing_time() -> None:
    a, b = strict(MDM_RAW), strict(MDM_RESIGNED_RAW)
    msh_a, msh_b = a.children[0], b.children[0]
    assert msh_a.msh_10.to_er7() == msh_b.msh_10.to_er7() == "MDM-1001-1"
    assert msh_a.msh_7.to_er7() == msh_b.msh_7.to_er7() == "20260302170000"
    txa_a = next(s for s in a.children if s.name == "TXA")
    txa_b = next(s for s in b.children if s.name == "TXA")
    assert txa_a.txa_22.ppn_15.to_er7() == "20260302165500"
    assert txa_b.txa_22.ppn_15.to_er7() == "20260302170500"


def test_second_content_under_one_control_id_is_a_conflict_and_the_first_stands() -> None:
    first, second = part(MDM_RAW), part(MDM_RESIGNED_RAW)
    for a, b in ((first, second), (second, first)):  # whichever arrives first stands
        state = add_part(None, a)
        clash = conflict(state, b)
        assert clash is not None
        assert clash.control_id == "MDM-1001-1"
        assert (clash.first.digest, clash.second.digest) == (sha256(a), sha256(b))
        assert sha256(a)[:16] in clash.detail and sha256(b)[:16] in clash.detail
        assert "'MDM-1001-1'" in clash.detail and "2026-03-02T17:00:00Z" in clash.detail
        assert add_part(state, b) == state  # never replaces it, whatever its version key says
        assert state.documentation["mdm:DOC-1001-DAILY"] == a


def test_an_identical_resend_is_a_duplicate_not_a_conflict() -> None:
    state = add_part(None, part(MDM_RAW))
    assert conflict(state, part(MDM_RAW)) is None
    assert add_part(state, part(MDM_RAW)) == state


def test_a_reused_control_id_is_caught_after_its_part_was_replaced() -> None:
    # MDM-1001-1, then the T08 edit (its own MSH-10) replaces it; then MDM-1001-1 again with a
    # later MSH-7 and other content: it would win on version order, but its control id was taken.
    assert strict(EDIT_RAW).children[0].msh_10.to_er7() != "MDM-1001-1"
    state = add_part(add_part(None, part(MDM_RAW)), part(EDIT_RAW))
    late = part(MDM_RESIGNED_RAW.replace(b"|20260302170000||MDM", b"|20260303090000||MDM", 1))
    assert late.version.control_id == "MDM-1001-1"
    assert conflict(state, late) is not None
    assert add_part(state, late) == state


def test_one_control_id_for_a_dft_and_an_mdm_of_the_visit_is_a_conflict() -> None:
    dft = part(DFT_RAW.replace(b"|DFT-1001-1|", b"|MDM-1001-1|"))
    assert strict(DFT_RAW.replace(b"|DFT-1001-1|", b"|MDM-1001-1|")).children[
        0
    ].msh_10.to_er7() == ("MDM-1001-1")
    clash = conflict(add_part(None, part(MDM_RAW)), dft)
    assert clash is not None and (clash.first.part, clash.second.part) == (
        "documentation",
        "charges",
    )


def test_a_record_stored_before_the_messages_field_still_catches_the_conflict() -> None:
    stored = add_part(None, part(MDM_RAW)).model_dump(mode="json")
    del stored["messages"]
    state = VisitState.model_validate(stored, strict=False)
    assert state.messages == {}
    assert conflict(state, part(MDM_RESIGNED_RAW)) is not None


def test_convert_refuses_the_second_and_writes_the_first(tmp_path: Path) -> None:
    path = tmp_path / "feed.hl7"
    path.write_bytes(mllp_frame(DFT_RAW) + mllp_frame(MDM_RAW) + mllp_frame(MDM_RESIGNED_RAW))
    out, err = io.BytesIO(), io.StringIO()
    assert convert_main("hl7", str(path), out, err, CONFIG) == 1
    lines = [json.loads(x) for x in err.getvalue().splitlines()]
    (rejected,) = [x for x in lines if "message" in x]
    assert (rejected["message"], rejected["reason"]) == (3, "control_id_conflict")
    assert lines[-1]["summary"]["rejected"] == 1 and lines[-1]["summary"]["parts"] == 2
    (visit,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert visit["documents"][0]["signed_at"] == "2026-03-02T16:55:00Z"  # the first's
