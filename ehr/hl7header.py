"""The MSH segment: who sent what, and the control id an ACK must echo (MSA-2)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from ehr import hl7text, hl7tree
from ehr.hl7time import parse_dtm
from ehr.rejection import Rejection, RejectReason


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
        return Rejection.one(RejectReason.NOT_HL7, "the data does not start with an MSH segment")
    return header_of(msg, zone)
