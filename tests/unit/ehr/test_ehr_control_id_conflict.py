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

from ehr import (
    PART_ADAPTER,
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
from ehr.hl7v2 import message_sha256
from ehr.profile import DEFAULT_PROFILE_PATH
from tests.unit.ehr.ehrtest import CONFIG, FIX, strict

MDM_RAW = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()
DFT_RAW = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
SIGNED = b"^^20260302165500"
#: The same message (MSH-7 20260302170000, MSH-10 MDM-1001-1), signed ten minutes later.
MDM_RESIGNED_RAW = MDM_RAW.replace(SIGNED, b"^^20260302170500")
EDIT_RAW = (FIX / "mdm_t08_pt_daily_v1001_edit.hl7").read_bytes()


def part(raw: bytes) -> ChargePart | DocumentationPart:
    result = parse_hl7v2(raw, CONFIG)
    assert isinstance(result, ChargePart | DocumentationPart), result
    return result


def sha256_as_sent(raw: bytes) -> str:
    """The expected digest, over the literal bytes: the message without its last segment
    terminator (each message here ends with one CR, HL7 v2.5.1 ch. 2.5.2)."""
    assert raw.endswith(b"\r") and not raw.endswith(b"\r\r")
    return hashlib.sha256(raw[:-1]).hexdigest()


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
    raws = (MDM_RAW, MDM_RESIGNED_RAW)
    for raw_a, raw_b in (raws, raws[::-1]):  # whichever arrives first stands
        a, b = part(raw_a), part(raw_b)
        state = add_part(None, a)
        clash = conflict(state, b)
        assert clash is not None
        assert clash.control_id == "MDM-1001-1"
        want_a, want_b = sha256_as_sent(raw_a), sha256_as_sent(raw_b)
        assert (clash.first.digest, clash.second.digest) == (want_a, want_b)
        assert want_a[:16] in clash.detail and want_b[:16] in clash.detail
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


# ---- the digest is the message's own, not the parsed part's (review defect 3) ---------------


def test_the_digest_is_of_the_message_as_sent_whatever_its_terminators_or_framing() -> None:
    # HL7 v2.5.1 ch. 2.5.2: a segment ends with CR; LF / CRLF (files, some engines) and MLLP
    # framing (<SB> ... <EB><CR>) are transport, not content. Expected: hashlib over the literal
    # CR-separated bytes without a trailing terminator.
    body = MDM_RAW[:-1]
    assert body + b"\r" == MDM_RAW and b"\n" not in body
    expected = hashlib.sha256(body).hexdigest()
    variants = [
        body,
        body + b"\r",
        body + b"\r\r",
        body.replace(b"\r", b"\n") + b"\n",
        body.replace(b"\r", b"\r\n") + b"\r\n",
        b"\x0b" + body + b"\r\x1c\r",
    ]
    for raw in variants:
        assert message_sha256(raw) == expected, raw[-4:]
    for raw in variants[:3]:  # what the parser takes (the gateway and `convert` unframe and split)
        assert part(raw).version.message_sha256 == expected, raw[-4:]
    assert part(MDM_RESIGNED_RAW).version.message_sha256 == sha256_as_sent(MDM_RESIGNED_RAW)
    assert sha256_as_sent(MDM_RESIGNED_RAW) != expected


def test_an_identical_resend_read_differently_after_a_profile_change_is_not_a_conflict(
    tmp_path: Path,
) -> None:
    # The same bytes read under another profile zone give another part (MSH-7 and TXA-22 read
    # in America/Chicago instead of UTC) but are the same message: a duplicate, not a conflict.
    text = DEFAULT_PROFILE_PATH.read_text()
    assert 'timezone = "UTC"' in text
    chicago = tmp_path / "chicago.toml"
    chicago.write_text(text.replace('timezone = "UTC"', 'timezone = "America/Chicago"'))
    later = load_config(b"test-key-0123456789abcdef", chicago)
    before, after = part(MDM_RAW), parse_hl7v2(MDM_RAW, later)
    assert isinstance(after, DocumentationPart)
    assert before.version.at != after.version.at  # 17:00 UTC vs 17:00 Chicago (23:00 UTC)
    assert conflict(add_part(None, before), after) is None


#: A join record as the code before issue 20 (/work/main, its .venv) stored it: streams'
#: JoinRecord.to_bytes of the state after DFT_RAW and OLD_MDM_RAW, parsed by that code with
#: the shipped profile (timezone UTC). No `messages`, no `credits`, no `message_sha256`; its
#: TXA-22 time is UTC (that code converted offsets), today's parser keeps the sender's -06:00.
OLD_MDM_RAW = MDM_RAW.replace(SIGNED, b"^^20260302165500-0600")
OLD_RECORD = (
    b'{"state":{"visit":{"facility":"CLINIC01","visit_number":"V1001"},"charges":{"part":"char'
    b'ges","source":"hl7v2","message_id":"DFT-1001-1","version":{"at":"2026-03-02T16:00:00Z","'
    b'control_id":"DFT-1001-1"},"visit":{"facility":"CLINIC01","visit_number":"V1001"},"patien'
    b't_ref":"P-ae790771f1ddf8f3f76d","date_of_service":"2026-03-02","discipline":"PT","payer"'
    b':{"payer_id":"MEDICARE-B","kind":"medicare","unit_rule":null},"rendering_npi":"123456789'
    b'3","rendering_credential":"PT","lines":[{"line_id":"1","cpt":"97110","units":2,"modifier'
    b's":["GP"],"minutes":33,"allowed_amount":null,"transaction_id":"TX1"},{"line_id":"2","cpt'
    b'":"97140","units":1,"modifiers":["GP","59"],"minutes":null,"allowed_amount":null,"transa'
    b'ction_id":"TX2"}]},"documentation":{"mdm:DOC-1001-DAILY":{"part":"documentation","source'
    b'":"hl7v2","message_id":"MDM-1001-1","version":{"at":"2026-03-02T17:00:00Z","control_id":'
    b'"MDM-1001-1"},"visit":{"facility":"CLINIC01","visit_number":"V1001"},"patient_ref":"P-ae'
    b'790771f1ddf8f3f76d","source_id":"mdm:DOC-1001-DAILY","status":"active","date_of_service"'
    b':"2026-03-02","discipline":"PT","author_npi":"1234567893","author_credential":"PT","minu'
    b'tes_by_cpt":{"97110":33,"97140":7},"assistant_minutes_by_cpt":{},"total_timed_minutes":4'
    b'0,"total_treatment_minutes":45,"documents":[{"doc_id":"DOC-1001-DAILY","kind":"daily_not'
    b'e","cpt":null,"signed_at":"2026-03-02T22:55:00Z","author_credential":"PT","document_date'
    b'":"2026-03-02","plan_start":null,"plan_end":null,"sent_to_certifier_at":null,"verbal_ord'
    b'er_at":null,"covers_from":null,"covers_through":null,"delay_reason_documented":null,"dis'
    b'cipline":null}],"episode_start_date":null}}},"waiting_since_ms":null,"emitted":"902e8d98'
    b'-9a08-59a8-9d7b-acedaca30445","updated_ms":1772470800000}'
)


def old_record() -> VisitState:
    from streams.ehr_stages import JoinRecord

    return JoinRecord.from_bytes(OLD_RECORD).state


def test_a_record_stored_before_the_upgrade_gives_no_false_conflict(tmp_path: Path) -> None:
    # The very message the old record holds, re-sent after the upgrade to a clinic profile in
    # Chicago: today's parser reads it differently (TXA-22 on the clinic's clock, -06:00, where
    # the old code stored UTC), and the record has no message digest to compare.
    assert strict(OLD_MDM_RAW).children[0].msh_10.to_er7() == "MDM-1001-1"
    state = old_record()
    assert state.messages == {} and state.credits == {}
    stored = state.documentation["mdm:DOC-1001-DAILY"]
    chicago = tmp_path / "chicago.toml"
    text = DEFAULT_PROFILE_PATH.read_text()
    chicago.write_text(text.replace('timezone = "UTC"', 'timezone = "America/Chicago"'))
    resent = parse_hl7v2(OLD_MDM_RAW, load_config(b"test-key-0123456789abcdef", chicago))
    assert isinstance(resent, DocumentationPart)
    assert resent.documents[0].signed_at.isoformat() == "2026-03-02T16:55:00-06:00"
    assert stored.documents[0].signed_at.isoformat() == "2026-03-02T22:55:00+00:00"
    assert conflict(state, resent) is None
    assert conflict(state, part(DFT_RAW)) is None


def test_after_the_upgrade_version_order_decides_then_the_digest_is_recorded() -> None:
    # Other content under the old record's MSH-10 with a later MSH-7: no digest to compare, so
    # version order applies (it replaces, as before); its digest is recorded from then on.
    state = old_record()
    late_raw = MDM_RESIGNED_RAW.replace(b"|20260302170000||MDM", b"|20260302180000||MDM", 1)
    late = part(late_raw)
    assert conflict(state, late) is None
    after = add_part(state, late)
    assert after.documentation["mdm:DOC-1001-DAILY"] == late
    assert after.messages["MDM-1001-1"].digest == sha256_as_sent(late_raw)
    clash = conflict(after, part(MDM_RAW))
    assert clash is not None and clash.first.digest == sha256_as_sent(late_raw)


def test_a_part_parsed_before_the_upgrade_is_not_checked() -> None:
    # A part still on ehr.visit.parts.v1 from the old parser (no message_sha256): as it was.
    old_part = json.loads(OLD_RECORD)["state"]["documentation"]["mdm:DOC-1001-DAILY"]
    assert "message_sha256" not in old_part["version"]
    in_flight = PART_ADAPTER.validate_json(json.dumps(old_part))
    assert in_flight.version.message_sha256 is None
    state = add_part(None, part(MDM_RESIGNED_RAW))
    assert conflict(state, in_flight) is None
