"""`EhrDeadLetter` v1 records for what the MLLP gateway rejects, always within the dead-letter
topic's record limit (the original bytes are truncated, and the detail says so, rather than the
dead letter being refused by the broker)."""

from __future__ import annotations

import base64
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from schemas.common import OpaqueRef
from schemas.ehr_deadletter import EhrDeadLetter, EhrSource

#: Room kept for Kafka's record framing and headers (streams/processor.py uses the same).
FRAMING_BYTES = 1024
_OPAQUE: TypeAdapter[str] = TypeAdapter(OpaqueRef)


def control_id_or_none(value: str | None) -> str | None:
    """MSH-10 when it is a valid opaque reference (printable ASCII, 1-128 characters)."""
    if not value:
        return None
    try:
        return _OPAQUE.validate_python(value)
    except ValidationError:
        return None


def dead_letter(
    *,
    reason: str,
    detail: str,
    value: bytes,
    original_size: int,
    control_id: str | None,
    now: datetime,
    limit: int,
) -> bytes:
    """The JSON record. `value` may already be a head of the original (`original_size` bytes);
    it is cut further when its base64 copy would not fit `limit`."""
    source = EhrSource(via="mllp", control_id=control_id_or_none(control_id))

    def build(raw: bytes, text: str) -> bytes:
        letter = EhrDeadLetter(
            format="hl7v2",
            reason=reason,
            detail=text,
            source=source,
            value_b64=base64.b64encode(raw).decode("ascii"),
            rejected_at=now,
        )
        return letter.model_dump_json().encode()

    note = _truncation_note(len(value), original_size)
    record = build(value, detail + note)
    budget = limit - FRAMING_BYTES
    if len(record) <= budget:
        return record
    # base64 is 4/3 of the bytes; leave room for the longer note.
    empty = len(build(b"", detail + _truncation_note(0, original_size) + " " * 40))
    keep = max(0, (budget - empty) * 3 // 4)
    return build(value[:keep], detail + _truncation_note(keep, original_size))


def _truncation_note(kept: int, original: int) -> str:
    if kept >= original:
        return ""
    return f" (value holds the first {kept} of {original} bytes)"
