"""The MSH segment: who sent what, and the control id an ACK must echo (MSA-2)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from ehr import hl7text, hl7tree
from ehr.hl7time import parse_dtm
from ehr.rejection import Rejection, RejectReason, shown


class MessageHeader(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field_separator: str = "|"
    encoding_characters: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    time: datetime | None = None
    #: MSH-9: message code, trigger event, message structure.
    message_code: str = ""
    trigger_event: str = ""
    structure: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""
    charset: str = ""


def header_of(msg: hl7tree.Message, zone: ZoneInfo) -> MessageHeader:
    msh = msg.segments[0]
    try:
        time = parse_dtm(msh.value(7), zone) if msh.value(7) else None
    except ValueError:
        time = None
    return MessageHeader(
        field_separator=msh.value(1) or "|",
        encoding_characters=msh.fields[2][0][0][0] if len(msh.fields) > 2 else "^~\\&",
        # HD.1 namespace id, else HD.2 universal id (HL7 v2.5 ch. 2A.33).
        sending_application=msh.value(3) or msh.value(3, 2),
        sending_facility=msh.value(4) or msh.value(4, 2),
        receiving_application=msh.value(5) or msh.value(5, 2),
        receiving_facility=msh.value(6) or msh.value(6, 2),
        time=time,
        message_code=msh.value(9, 1).upper(),
        trigger_event=msh.value(9, 2).upper(),
        structure=msh.value(9, 3).upper(),
        control_id=msh.value(10),
        processing_id=msh.value(11),
        version=msh.value(12),
        charset=msh.value(18),
    )


def read_header(raw: bytes, default_charset: str, zone: ZoneInfo) -> MessageHeader | Rejection:
    """Only the header, for building an ACK (also for a message the profile rejects)."""
    text = hl7text.decode_message(raw, default_charset)
    if isinstance(text, Rejection):
        text = raw.decode("latin-1")  # the header is ASCII; good enough to address the ACK
    msg = hl7tree.parse(text)
    if msg is None:
        return delimiter_problem(text) or not_msh()
    return header_of(msg, zone)


def not_msh() -> Rejection:
    return Rejection.one(
        RejectReason.NOT_HL7, "the data does not start with an MSH segment", segment="MSH"
    )


#: MSH-2 lengths: component and repetition separators always; the escape character and the
#: subcomponent separator "may be omitted" when not used (HL7 v2.5.1 ch. 2.5.4, figure 2-1); a
#: fifth, the truncation character, from v2.7 (ch. 2.5.5.2).
_ENCODING_LENGTHS = (2, 3, 4, 5)


def delimiter_problem(text: str) -> Rejection | None:
    """A message that starts with MSH but whose MSH-1/MSH-2 cannot delimit it, named as such
    (not as "does not start with an MSH segment"). HL7 v2.5.1 ch. 2.14.9.1 MSH-1 (field
    separator) and 2.14.9.2 MSH-2 (encoding characters: component, repetition, escape and
    subcomponent separators, in that order, recommended ^~\\&; ch. 2.5.4 figure 2-1): single
    characters, all different, none a letter, digit, space or control character (it would be
    read as data). None when the text does not start with MSH or MSH-1/2 are fine."""
    head = text.lstrip()
    if not head.startswith("MSH"):
        return None
    sep = head[3:4]
    if not sep or sep.isalnum() or not sep.isprintable() or sep.isspace():
        return _bad_delimiters(
            f"MSH-1 (field separator) {_shown_char(sep)} is not a delimiter: it must be one "
            "printable, non-alphanumeric character right after MSH (recommended |)",
            1,
        )
    end = head.find(sep, 4)
    line_end = min((i for i in (head.find("\r", 4), head.find("\n", 4)) if i >= 0), default=-1)
    if end < 0 or (0 <= line_end < end):
        return _bad_delimiters(
            "MSH-2 (encoding characters) is not followed by a field separator", 2
        )
    enc = head[4:end]
    chars = sep + enc
    if (
        len(enc) not in _ENCODING_LENGTHS
        or len(set(chars)) != len(chars)
        or any(ch.isalnum() or ch.isspace() or not ch.isprintable() for ch in enc)
    ):
        return _bad_delimiters(
            f"MSH-2 (encoding characters) {shown(enc)} is not a set of delimiters: component, "
            "repetition, escape, subcomponent separators in that order (recommended ^~\\&), "
            "2 to 4 different characters (a 5th, the truncation character, from v2.7), none a "
            "letter, digit, space or the field separator",
            2,
        )
    return None


def _bad_delimiters(detail: str, field: int) -> Rejection:
    return Rejection.one(
        RejectReason.NOT_HL7, f"{detail} (HL7 v2.5.1 ch. 2.14.9)", segment="MSH", field=field
    )


def _shown_char(ch: str) -> str:
    return "(none)" if not ch else shown(ch) if ch.isprintable() else f"0x{ord(ch):02X}"


def msh_cut_problem(msg: hl7tree.Message) -> Rejection | None:
    """MSH ending before MSH-12 (version id, required like MSH-9 and MSH-10: HL7 v2.5.1 ch.
    2.14.9): said as such, and when the next segment has no segment ID (a line that starts with
    a field separator, a digit or lower case), as a line break inside MSH: segments end at CR
    (ch. 2.5.4), and this reader also takes LF and CRLF as segment ends (ehr/hl7text.py). An MSH
    whose last field is an empty MSH-12 followed by such a line is cut after MSH-11 (not
    "MSH-12 ''")."""
    msh = msg.segments[0]
    follows = msg.segments[1].name if len(msg.segments) > 1 else None
    broken = follows is not None and not _SEGMENT_ID.match(follows)
    last = len(msh.fields) - 1
    if last == 12 and not msh.value(12) and broken:
        # `...|P|` CR `2.5.1`: MSH-12 is present but empty only because the line break came
        # right after MSH-11's field separator; the version is the start of the next line.
        last = 11
    elif last > 11:
        return None  # MSH-12 written (or empty in a complete MSH: a version problem, not a cut)
    detail = f"the MSH segment ends after MSH-{last}: MSH-9, MSH-10 and MSH-12 are required"
    if broken:
        detail = (
            f"the MSH segment is cut by a line break after MSH-{last}: the next line does not "
            "start with a segment ID, so the rest of MSH was read as another segment; send MSH "
            "on one line (segments end at CR)"
        )
    return Rejection.one(
        RejectReason.NOT_HL7,
        f"{detail} (HL7 v2.5.1 ch. 2.5.2, 2.5.4, 2.14.9)",
        msh.value(10) or None,
        segment="MSH",
        field=last + 1,
    )


#: A segment ID: three upper-case letters or digits, the first a letter (HL7 v2.5.1 ch. 2.5.2;
#: Z segments included).
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
