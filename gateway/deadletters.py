"""`EhrDeadLetter` v1 records for what the MLLP gateway rejects, fitted to the dead-letter topic's
record limit by the one rule every dead-letter topic follows (runtime/deadletters.py: the
original bytes are attached whole or, when they would not fit, left out, and `detail` says so).
A message the gateway cut short itself (a frame over TC_MLLP_MAX_BYTES, a connection closed
mid-frame) is attached as far as it was received, and `detail` says how much that is."""

from __future__ import annotations

from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from runtime.deadletters import Fitted, fit, with_notes
from schemas.common import OpaqueRef
from schemas.ehr_deadletter import EhrDeadLetter, EhrSource

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
) -> Fitted:
    """The JSON record (`letter`, and its smallest form for a broker that refuses it as too
    large). `value` may be a head of the original message (`original_size` bytes, of which the
    gateway kept only what it received)."""
    source = EhrSource(via="mllp", control_id=control_id_or_none(control_id))
    head = f"value holds the first {len(value)} of {original_size} bytes"

    def render(_key_b64: str | None, value_b64: str | None, notes: list[str]) -> bytes:
        if value_b64 is not None and len(value) < original_size:
            notes = [head, *notes]
        letter = EhrDeadLetter(
            format="hl7v2",
            reason=reason,
            detail=with_notes(detail, notes),
            source=source,
            value_b64=value_b64,
            rejected_at=now,
        )
        return letter.model_dump_json().encode()

    return fit(limit, None, value, render, key_copy=False, value_size=original_size)
