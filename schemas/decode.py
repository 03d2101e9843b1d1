"""Bytes -> validated visit, or a rejection with a dead-letter reason. Pure: no I/O, no clock.

Shared by the stream worker and the `audit` command so both accept and reject exactly the same
records. Rejection details name field paths and rules only; they never echo input values (the
payload may carry PHI that the contract keeps out of logs and dead-letter text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.common import DeadLetterReason
from schemas.visit import TherapyVisitCompleted

#: Default record size limit. A real visit event is 1-5 KB; 1 MiB is generous and keeps a
#: runaway producer from pinning the worker's memory. Configurable in the worker settings.
DEFAULT_MAX_BYTES = 1_048_576
SUPPORTED_VERSIONS = (1,)
_MAX_ERRORS_IN_DETAIL = 5


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: DeadLetterReason
    detail: str


def decode_visit(
    raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES
) -> TherapyVisitCompleted | Rejection:
    """Validate one record's value. Never raises for bad input."""
    if len(raw) > max_bytes:
        return Rejection(
            DeadLetterReason.TOO_LARGE, f"record is {len(raw)} bytes; the limit is {max_bytes}"
        )
    try:
        return TherapyVisitCompleted.model_validate_json(raw)
    except ValidationError as exc:
        return _classify(exc)


def _classify(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_context=False)
    for err in errors:
        if err["type"] == "json_invalid":
            # The parser's message names the position and the problem, not the content.
            return Rejection(DeadLetterReason.INVALID_JSON, f"not valid JSON: {err['msg']}")
        if err["type"] == "model_type":
            return Rejection(
                DeadLetterReason.SCHEMA_VIOLATION, "the record is valid JSON but not a JSON object"
            )
    for err in errors:
        version = err.get("input")
        if (
            err["loc"] == ("schema_version",)
            and err["type"] == "literal_error"
            and isinstance(version, int)
            and not isinstance(version, bool)
        ):
            return Rejection(
                DeadLetterReason.UNSUPPORTED_VERSION,
                f"schema_version {version} is not supported (supported: "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))})",
            )
    return Rejection(DeadLetterReason.SCHEMA_VIOLATION, describe_errors(errors))


def describe_errors(errors: Sequence[ErrorDetails]) -> str:
    """'path: message; path: message (+N more)', without input values."""
    items = list(errors)
    parts = []
    for err in items[:_MAX_ERRORS_IN_DETAIL]:
        loc = ".".join(str(p) for p in err["loc"]) or "(record)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(items) - _MAX_ERRORS_IN_DETAIL
    text = "; ".join(parts)
    return f"{text} (+{more} more)" if more > 0 else text
