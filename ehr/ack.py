"""HL7 v2 original-mode ACKs: AA / AE / AR with MSA-2 = the sender's MSH-10, MSA-3 text and, for
AE/AR, one ERR per problem (HL7 v2.5 ch. 2.9.2, 2.15.5; tables 0008, 0357, 0516).

python-hl7's `Message.create_ack` adds neither MSA-3 nor ERR and reads the wall clock; this
builder takes the time and the new control id from its caller, so it stays pure.

When to send which (docs/integration-hl7.md): AA only after the part is durably written (Kafka
acknowledged it); AE for a message the profile rejects (do not resend it unchanged); AR for a
system error on our side (the sender may retry).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

from ehr.hl7header import MessageHeader
from ehr.parts import ChargePart, DocumentationPart
from ehr.rejection import Problem, Rejection, RejectReason

AckCode = Literal["AA", "AE", "AR"]

#: HL7 table 0357 (message error condition codes) for each rejection reason.
ERROR_CODES: dict[RejectReason, tuple[str, str]] = {
    RejectReason.NOT_HL7: ("100", "Segment sequence error"),
    RejectReason.NOT_FHIR: ("100", "Segment sequence error"),
    RejectReason.BAD_CHARSET: ("102", "Data type error"),
    RejectReason.UNSUPPORTED_TYPE: ("200", "Unsupported message type"),
    RejectReason.UNSUPPORTED_VERSION: ("203", "Unsupported version id"),
    RejectReason.UNKNOWN_SENDER: ("204", "Unknown key identifier"),
    RejectReason.MISSING_FIELD: ("101", "Required field missing"),
    RejectReason.BAD_VALUE: ("102", "Data type error"),
    RejectReason.UNMAPPED_CODE: ("103", "Table value not found"),
    RejectReason.UNSUPPORTED_TRANSACTION: ("103", "Table value not found"),
    RejectReason.NOT_THERAPY: ("103", "Table value not found"),
    RejectReason.NOT_A_VISIT: ("200", "Unsupported message type"),
    RejectReason.NO_PROCEDURE_CODE: ("101", "Required field missing"),
    RejectReason.CONTROL_ID_CONFLICT: ("205", "Duplicate key identifier"),
}
_INTERNAL = ("207", "Application internal error")
MAX_ERR_SEGMENTS = 10


def ack_code_for(result: ChargePart | DocumentationPart | Rejection) -> AckCode:
    """AE for a rejection; AA for a part (to be sent only once the part is durably written)."""
    return "AE" if isinstance(result, Rejection) else "AA"


def build_ack(
    header: MessageHeader | None,
    code: AckCode,
    *,
    control_id: str,
    now: datetime,
    text: str = "",
    problems: Sequence[Problem] = (),
    application: str = "THERAPY-COMPLIANCE",
    facility: str = "",
) -> bytes:
    """The ACK message, segments ending in CR, ASCII (anything else escaped as \\Xhh\\)."""
    h = header or MessageHeader()
    sep = h.field_separator or "|"
    enc = h.encoding_characters if len(h.encoding_characters) >= 4 else "^~\\&"
    comp, _rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
    seps = sep + enc

    def e(value: str) -> str:
        return escape(value, seps, esc)

    version = h.version or "2.5.1"
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    msh = [
        "MSH",
        enc,
        e(application),
        e(facility or h.receiving_facility),
        e(h.sending_application),
        e(h.sending_facility),
        stamp,
        "",
        # MSH-9.3 (message structure) exists from v2.3.1 on.
        comp.join(
            ["ACK", e(h.trigger_event), *([] if version in ("2.1", "2.2", "2.3") else ["ACK"])]
        ),
        e(control_id),
        e(h.processing_id or "P"),
        e(version),
    ]
    segments = [sep.join(msh), sep.join(["MSA", code, e(h.control_id), e(text[:80])])]
    if code != "AA":
        errs: list[Problem | None] = [*problems[:MAX_ERR_SEGMENTS]] or [None]
        segments += [_err(p, code, version, sep, comp, sub, e) for p in errs]
    return ("\r".join(segments) + "\r").encode("ascii")


def _err(
    p: Problem | None,
    code: AckCode,
    version: str,
    sep: str,
    comp: str,
    sub: str,
    e: Callable[[str], str],
) -> str:
    number, label = ERROR_CODES[p.reason] if p is not None else _INTERNAL
    if code == "AR" and p is None:
        number, label = _INTERNAL
    location = (
        [p.segment, str(p.sequence or 1), str(p.field) if p.field else ""]
        if p is not None and p.segment
        else []
    )
    detail = e(p.detail) if p is not None else ""
    if version.startswith(("2.1", "2.2", "2.3", "2.4")):
        # Before 2.5, ERR-1 (ELD) carries location and code: segment^sequence^field^code&text&0357.
        eld = location or ["", "", ""]
        return sep.join(["ERR", comp.join([*eld, sub.join([number, e(label), "HL70357"])])])
    erl = comp.join(location)
    # 2.5+: ERR-2 location (ERL), ERR-3 HL7 error code (CWE, table 0357), ERR-4 severity (table
    # 0516: E error), ERR-8 user message.
    return sep.join(
        ["ERR", "", erl, comp.join([number, e(label), "HL70357"]), "E", "", "", "", detail]
    )


def escape(text: str, seps: str, esc: str) -> str:
    """HL7 v2.5 ch. 2.7 escapes for the delimiters, line breaks, and non-ASCII as \\Xhh\\."""
    names = {seps[0]: "F", seps[1]: "S", seps[2]: "R", seps[4]: "T", esc: "E"}
    out: list[str] = []
    for ch in text:
        if ch in names:
            out.append(f"{esc}{names[ch]}{esc}")
        elif ch in "\r\n":
            out.append(f"{esc}.br{esc}")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"{esc}X{ch.encode('utf-8').hex().upper()}{esc}")
    return "".join(out)


def rejection_ack(
    header: MessageHeader | None, rejection: Rejection, *, control_id: str, now: datetime
) -> bytes:
    """AE for a message the profile rejected: MSA-3 the reason, one ERR per problem."""
    return build_ack(
        header,
        "AE",
        control_id=control_id,
        now=now,
        text=f"{rejection.reason.value}: {rejection.problems[0].detail if rejection.problems else rejection.detail}",
        problems=rejection.problems,
    )
