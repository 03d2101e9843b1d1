"""HL7 v2 message bytes -> ChargePart | DocumentationPart | Rejection. Never raises for bad input.

Dispatch on MSH-9 (docs/integration-hl7.md): DFT^P03 -> charges (ehr/dft.py); MDM^T02, T04, T06,
T08, T10 -> a document, MDM^T11 -> its cancellation, ORU^R01 -> minutes (ehr/notes.py). Before
that: MSH-18 charset, MSH-12 version, MSH-4 sending facility.
"""

from __future__ import annotations

import hashlib

from ehr import hl7text, hl7tree
from ehr.dft import charges_from_dft
from ehr.hl7header import (
    MessageHeader,
    delimiter_problem,
    header_of,
    msh_cut_problem,
    not_msh,
)
from ehr.notes import CANCEL_EVENT, CONTENT_EVENTS, documentation_from_mdm, documentation_from_oru
from ehr.parts import AnyPart, ChargePart, CreditPart, DocumentationPart
from ehr.profile import EhrConfig
from ehr.rejection import Rejection, RejectReason, shown
from schemas.decode import UTF8_BOM

Hl7Result = ChargePart | CreditPart | DocumentationPart | Rejection
#: What one message gives: its parts (several only for a DFT of a recurring account whose lines
#: carry several dates: one per date) or a rejection.
Hl7Parts = list[AnyPart] | Rejection


def parse_hl7v2(raw: bytes, config: EhrConfig) -> Hl7Result:
    """One message -> its part, or a typed rejection. For a message that gives several parts (a
    recurring account's DFT over several dates) this raises ValueError: callers that take any
    input (the gateway, the worker, `convert`) use `parse_hl7v2_parts`."""
    result = parse_hl7v2_parts(raw, config)
    if isinstance(result, Rejection):
        return result
    if len(result) != 1:
        raise ValueError(f"the message gives {len(result)} parts: use parse_hl7v2_parts")
    return result[0]


def message_sha256(raw: bytes) -> str:
    """SHA-256 (hex) of one message as sent, independent of how it is parsed or of the profile:
    MLLP framing (<SB> ... <EB><CR>, HL7 MLLP Release 2) removed, segment terminators
    normalised (HL7 v2.5.1 ch. 2.5.2: a segment ends with CR; senders and files also use LF or
    CRLF) to CR, trailing terminators removed. The join compares it for a reused MSH-10."""
    body = raw.removeprefix(hl7text.SB)
    body = body.removesuffix(hl7text.EB + hl7text.CR).removesuffix(hl7text.EB)
    body = body.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")
    return hashlib.sha256(body).hexdigest()


def parse_hl7v2_parts(raw: bytes, config: EhrConfig) -> Hl7Parts:
    """One message (no MLLP framing) -> its parts, or a typed rejection. Every part carries the
    message's `message_sha256` in its version (the parts of one split message share it)."""
    result = _parse(raw, config)
    if isinstance(result, Rejection):
        return result
    sha = message_sha256(raw)
    return [
        p.model_copy(update={"version": p.version.model_copy(update={"message_sha256": sha})})
        for p in result
    ]


def _parse(raw: bytes, config: EhrConfig) -> Hl7Parts:
    if raw.startswith(UTF8_BOM):
        # A message starts with MSH and names its charset in MSH-18; a BOM is an editor's
        # artefact, refused like a visit record's (docs/rules.md "Input hygiene"). `convert`
        # skips one at the start of its file.
        return Rejection.one(
            RejectReason.NOT_HL7,
            "the message starts with a UTF-8 byte-order mark (EF BB BF) before MSH: remove it "
            "(an HL7 v2 message starts with its MSH segment; MSH-18 names the charset)",
            segment="MSH",
        )
    text = hl7text.decode_message(raw, config.profile.default_charset)
    if isinstance(text, Rejection):
        return text
    # HL7 v2 ends segments with CR (hex 0D, v2.5.1 ch. 2.5.4 figure 2-1); many senders and
    # files use LF or CRLF. `convert` splits files on all three, so the gateway and the worker
    # read a message the same way (a line break inside MSH is still found: `msh_cut_problem`).
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    # MSH-1/MSH-2 first: python-hl7 fails (or silently reads defaults) on bad delimiters.
    bad = delimiter_problem(text)
    if bad is not None:
        return bad
    msg = hl7tree.parse(text)
    if msg is None:
        return not_msh()
    cut = msh_cut_problem(msg)
    if cut is not None:
        return cut
    later = [i for i, seg in enumerate(msg.segments[1:], 2) if seg.name.lstrip("\ufeff") == "MSH"]
    if later:
        # Two messages in one block (a sender that batches without FHS/BHS, or a lost frame
        # end): parsing only the first would drop the second without a word.
        return Rejection.one(
            RejectReason.NOT_HL7,
            f"the data holds {len(later) + 1} messages (another MSH segment at segment "
            f"{later[0]}): send one message per MLLP block",
            header_of(msg, config.profile.zone).control_id or None,
            segment="MSH",
        )
    return parse_message(msg, header_of(msg, config.profile.zone), config)


def parse_message(msg: hl7tree.Message, header: MessageHeader, config: EhrConfig) -> Hl7Parts:
    profile = config.profile
    mid = header.control_id or None
    if header.version not in profile.hl7_versions:
        return Rejection.one(
            RejectReason.UNSUPPORTED_VERSION,
            f"MSH-12 {shown(header.version)} is not in the profile's hl7_versions",
            mid,
            segment="MSH",
            field=12,
        )
    if profile.accepted_facilities and header.sending_facility not in profile.accepted_facilities:
        return Rejection.one(
            RejectReason.UNKNOWN_SENDER,
            f"MSH-4 {shown(header.sending_facility)} is not in the profile's accepted_facilities",
            mid,
            segment="MSH",
            field=4,
        )
    kind = (header.message_code, header.trigger_event)
    if kind == ("DFT", "P03"):
        return charges_from_dft(msg, header, config)
    if header.message_code == "MDM" and (
        header.trigger_event in CONTENT_EVENTS or header.trigger_event == CANCEL_EVENT
    ):
        return _listed(documentation_from_mdm(msg, header, config))
    if kind == ("ORU", "R01"):
        return _listed(documentation_from_oru(msg, header, config))
    return Rejection.one(
        RejectReason.UNSUPPORTED_TYPE,
        f"MSH-9 {shown(header.message_code + '^' + header.trigger_event)} is not in this profile "
        "(DFT^P03; MDM^T02, T04, T06, T08, T10, T11; ORU^R01)",
        mid,
        segment="MSH",
        field=9,
    )


def _listed(result: DocumentationPart | Rejection) -> Hl7Parts:
    return result if isinstance(result, Rejection) else [result]
