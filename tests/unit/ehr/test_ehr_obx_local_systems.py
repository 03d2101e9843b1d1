"""Issue 20 item 4: OBX-3 local coding systems. HL7 v2.5.1 table 0396 names both `L` and `99zzz`
("99" followed by any characters) as local coding systems, so the profile's minutes code under
`99EPC` is read as minutes; the profile's code under a system that is not local, or a minutes OBX
whose value or unit cannot be read, rejects the note (never accepted without its minutes).

Every message built here is checked with hl7apy (STRICT v2.5.1): OBX-3 components, OBX-4, -5, -6
and -11 are where the test says they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from ehr import DocumentationPart, Rejection, parse_hl7v2
from ehr.notes import is_local_system
from tests.unit.ehr.ehrtest import CONFIG, FIX

MDM = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()
ORU = (FIX / "oru_r01_pt_minutes_v1001.hl7").read_bytes()


def segments(node: Any, name: str) -> list[Any]:
    """Every segment `name` in an hl7apy message, groups included, in order."""
    found: list[Any] = []
    for child in node.children:
        if child.name == name:
            found.append(child)
        elif getattr(child, "children", None) and len(child.name) > 3:  # a group
            found.extend(segments(child, name))
    return found


def strict_obx(raw: bytes) -> list[Any]:
    msg = parse_message(raw.decode(), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    msg.validate()
    return segments(msg, "OBX")


def with_obx3(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) >= 1
    return raw.replace(old, new)


@pytest.mark.parametrize(
    ("system", "local"),
    [("L", True), ("99EPC", True), ("99TC", True), ("99", True), ("", True), ("LN", False)],
)
def test_table_0396_local_systems(system: str, local: bool) -> None:
    # Table 0396: "L" local general code; "99zzz" local general code where z is an alphanumeric
    # character. LN is LOINC, a standard system.
    assert is_local_system(system, []) is local


def test_minutes_under_99epc_are_read() -> None:
    raw = with_obx3(MDM, b"^Minutes by procedure^L|", b"^Minutes by procedure^99EPC|")
    raw = with_obx3(raw, b"^Total timed minutes^L|", b"^Total timed minutes^99EPC|")
    obx = strict_obx(raw)
    assert [o.obx_3.ce_3.to_er7() for o in obx[1:4]] == ["99EPC", "99EPC", "99EPC"]
    assert [o.obx_4.to_er7() for o in obx[1:3]] == ["97110", "97140"]
    assert [o.obx_5.to_er7() for o in obx[1:4]] == ["33", "7", "40"]
    part = parse_hl7v2(raw, CONFIG)
    assert isinstance(part, DocumentationPart)
    assert part.minutes_by_cpt == {"97110": 33, "97140": 7}
    assert part.total_timed_minutes == 40


def test_local_code_as_the_alternate_identifier_is_read() -> None:
    # CE.4-6 alternate identifier (HL7 v2.5.1 ch. 2A, CE): a standard code first, the local one
    # second.
    raw = with_obx3(
        MDM,
        b"|TC-TIMED-MIN^Total timed minutes^L|",
        b"|55411-3^Exercise duration^LN^TC-TIMED-MIN^Total timed minutes^99EPC|",
    )
    (obx,) = [o for o in strict_obx(raw) if o.obx_3.ce_1.to_er7() == "55411-3"]
    assert (obx.obx_3.ce_3.to_er7(), obx.obx_3.ce_4.to_er7(), obx.obx_3.ce_6.to_er7()) == (
        "LN",
        "TC-TIMED-MIN",
        "99EPC",
    )
    part = parse_hl7v2(raw, CONFIG)
    assert isinstance(part, DocumentationPart) and part.total_timed_minutes == 40


@pytest.mark.parametrize("raw", [MDM, ORU], ids=["mdm", "oru"])
def test_profile_code_under_a_standard_system_rejects_the_note(raw: bytes) -> None:
    raw = with_obx3(raw, b"|TC-TIMED-MIN^Total timed minutes^L|", b"|TC-TIMED-MIN^Timed^LN|")
    (obx,) = [o for o in strict_obx(raw) if o.obx_3.ce_1.to_er7() == "TC-TIMED-MIN"]
    assert obx.obx_3.ce_3.to_er7() == "LN"
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection)
    assert rej.reason == "unmapped_code"
    assert "'TC-TIMED-MIN'" in rej.detail and "'LN'" in rej.detail and "0396" in rej.detail
    (p,) = rej.problems
    assert (p.segment, p.field) == ("OBX", 3)


def test_a_listed_system_is_local_for_the_profile() -> None:
    raw = with_obx3(MDM, b"|TC-TIMED-MIN^Total timed minutes^L|", b"|TC-TIMED-MIN^Timed^EPIC|")
    assert isinstance(parse_hl7v2(raw, CONFIG), Rejection)
    obx = CONFIG.profile.obx.model_copy(update={"coding_systems": ["EPIC"]})
    config = CONFIG.model_copy(update={"profile": CONFIG.profile.model_copy(update={"obx": obx})})
    part = parse_hl7v2(raw, config)
    assert isinstance(part, DocumentationPart) and part.total_timed_minutes == 40


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        # OBX-5 not a whole number of minutes (NM 0-1440).
        (b"||40|min^minute^UCUM|", b"||forty|min^minute^UCUM|", 5),
        (b"||40|min^minute^UCUM|", b"||40.5|min^minute^UCUM|", 5),
        # OBX-6 in hours (UCUM h), not minutes.
        (b"||40|min^minute^UCUM|", b"||40|h^hour^UCUM|", 6),
        # OBX-11 P (preliminary, table 0085) is not a final result.
        (b"||40|min^minute^UCUM|||||F", b"||40|min^minute^UCUM|||||P", 11),
    ],
)
def test_minutes_obx_that_cannot_be_read_rejects_the_note(
    old: bytes, new: bytes, field: int
) -> None:
    raw = with_obx3(MDM, old, new)
    timed = [o for o in strict_obx(raw) if o.obx_3.ce_1.to_er7() == "TC-TIMED-MIN"]
    assert len(timed) == 1
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "bad_value"
    assert [(p.segment, p.field) for p in rej.problems] == [("OBX", field)]


# ---- minutes under a code the profile does not know (review defect 6) -------------------------


def config_ignoring(*codes: str) -> Any:
    """The shipped profile with [obx].ignored_codes set, as an operator writes it."""
    profile = CONFIG.profile
    obx = profile.obx.model_copy(update={"ignored_codes": list(codes)})
    return CONFIG.model_copy(update={"profile": profile.model_copy(update={"obx": obx})})


EPIC_TIMED = b"|1234^PT TIMED MINUTES^99EPC|"


@pytest.mark.parametrize("raw", [MDM, ORU], ids=["mdm", "oru"])
@pytest.mark.parametrize(
    "unit", [b"min^minute^UCUM", b"MIN", b"minutes", b"mins", b"Minutes^Minutes^L", b"^min"]
)
def test_an_unknown_code_with_a_minutes_unit_rejects_the_note(raw: bytes, unit: bytes) -> None:
    # OBX-3 a local code the profile does not know, OBX-6 minutes (UCUM "min"): the sender's own
    # code for therapy minutes. Skipped, the note would lack its minutes without a word.
    raw = with_obx3(
        raw,
        b"|TC-TIMED-MIN^Total timed minutes^L||40|min^minute^UCUM|",
        b"|1234^PT TIMED^99EPC|" + b"|40|" + unit + b"|",  # a text without "minutes"
    )
    (obx,) = [o for o in strict_obx(raw) if o.obx_3.ce_1.to_er7() == "1234"]
    assert (obx.obx_3.ce_3.to_er7(), obx.obx_5.to_er7()) == ("99EPC", "40")
    assert obx.obx_6.to_er7() == unit.decode()  # OBX-6 units (CE.1 identifier, CE.2 text)
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "unmapped_code", rej
    assert "'1234'" in rej.detail and "'99EPC'" in rej.detail
    assert "[obx] codes" in rej.detail and "[obx].ignored_codes" in rej.detail
    assert (rej.problems[0].segment, rej.problems[0].field, rej.problems[0].sequence) == (
        "OBX",
        3,
        4 if b"MDM^T02" in raw else 3,  # the 4th OBX of the MDM, the 3rd of the ORU
    )


def test_an_ignored_code_with_a_minutes_unit_is_skipped() -> None:
    # [obx].ignored_codes: a minute-valued observation that is not therapy minutes (travel time).
    obx = b"OBX|6|NM|TRAVEL^Travel time^99EPC||25|min^minute^UCUM|||||F\r"
    raw = MDM + obx
    (travel,) = [o for o in strict_obx(raw) if o.obx_3.ce_1.to_er7() == "TRAVEL"]
    assert travel.obx_6.ce_1.to_er7() == "min"
    assert isinstance(parse_hl7v2(raw, CONFIG), Rejection)
    part = parse_hl7v2(raw, config_ignoring("TRAVEL"))
    assert isinstance(part, DocumentationPart), part
    assert (part.total_timed_minutes, part.minutes_by_cpt) == (40, {"97110": 33, "97140": 7})


def test_an_unknown_code_with_another_unit_is_someone_elses_observation() -> None:
    # Not minutes (a lab value in mg/dL): not the profile's, skipped as before.
    raw = MDM + b"OBX|6|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|||||F\r"
    assert strict_obx(raw)[-1].obx_6.ce_1.to_er7() == "mg/dL"
    part = parse_hl7v2(raw, CONFIG)
    assert isinstance(part, DocumentationPart) and part.total_timed_minutes == 40


@pytest.mark.parametrize("where", ["ce1", "ce4"])
def test_a_profile_code_in_other_letters_is_reported_not_read(where: str) -> None:
    # OBX-3 CE.1 is an ST: codes compare as written (HL7 v2.5.1 ch. 2A, CE), so tc-timed-min is
    # not TC-TIMED-MIN. Not read as minutes, but not skipped either: said, naming both.
    new = (
        b"|tc-timed-min^Total timed minutes^L|"
        if where == "ce1"
        else b"|55411-3^Exercise duration^LN^Tc-Timed-Min^Total timed minutes^L|"
    )
    raw = with_obx3(MDM, b"|TC-TIMED-MIN^Total timed minutes^L|", new)
    (obx,) = [o for o in strict_obx(raw) if o.obx_5.to_er7() == "40"]
    code = obx.obx_3.ce_1.to_er7() if where == "ce1" else obx.obx_3.ce_4.to_er7()
    assert code.upper() == "TC-TIMED-MIN" and code != "TC-TIMED-MIN"
    rej = parse_hl7v2(raw, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "unmapped_code", rej
    assert f"{code!r}" in rej.detail and "'TC-TIMED-MIN'" in rej.detail
    assert "letter case" in rej.detail


def test_ignored_codes_may_not_name_a_code_the_profile_reads(tmp_path: Path) -> None:
    from ehr import ProfileError, load_profile
    from ehr.profile import DEFAULT_PROFILE_PATH

    text = DEFAULT_PROFILE_PATH.read_text()
    assert "\nignored_codes = []\n" in text  # documented in the shipped example
    path = tmp_path / "p.toml"
    path.write_text(text.replace("\nignored_codes = []\n", '\nignored_codes = ["TC-TIMED-MIN"]\n'))
    with pytest.raises(ProfileError, match="ignored_codes lists a code the profile reads"):
        load_profile(path)
    assert load_profile().obx.ignored_codes == []  # the shipped default: nothing ignored


def test_an_unknown_numeric_code_whose_text_says_minutes_rejects_the_note() -> None:
    # No unit, but OBX-2 NM and OBX-3 text "PT TIMED MINUTES" (CE.2): minutes by its name. The
    # same text on a non-numeric value (OBX-2 TX) is narrative, not read and not reported.
    obx = b"OBX|6|NM|1234^PT TIMED MINUTES^99EPC||38||||||F\r"
    (seg,) = [o for o in strict_obx(MDM + obx) if o.obx_3.ce_1.to_er7() == "1234"]
    assert (seg.obx_2.to_er7(), seg.obx_3.ce_2.to_er7(), seg.obx_6.to_er7()) == (
        "NM",
        "PT TIMED MINUTES",
        "",
    )
    rej = parse_hl7v2(MDM + obx, CONFIG)
    assert isinstance(rej, Rejection) and rej.reason == "unmapped_code", rej
    assert "'PT TIMED MINUTES'" in rej.detail
    text = b"OBX|6|TX|1234^PT TIMED MINUTES^99EPC||Tolerated well||||||F\r"
    assert isinstance(parse_hl7v2(MDM + text, CONFIG), DocumentationPart)
