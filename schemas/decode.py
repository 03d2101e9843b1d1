"""Bytes -> validated visit, or a rejection with a dead-letter reason. Pure: no I/O, no clock.

Shared by the stream worker and the `audit` command so both accept and reject exactly the same
records. Rejection details name field paths and rules only; they never echo input values (the
payload may carry PHI that the contract keeps out of logs and dead-letter text).

Beyond the schema (docs/rules.md, "Input hygiene"): a JSON object naming a key twice is a
`schema_violation` (schemas/duplicate_keys.py), a `patient_ref` outside the configured alphabet
too (schemas/patient_ref.py), and a record starting with a byte-order mark stays `invalid_json`
with a detail that says so (`audit` skips one at the start of its file, cli/audit.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.common import DeadLetterReason
from schemas.duplicate_keys import duplicate_key_detail
from schemas.patient_ref import (
    DEFAULT_PATTERN,
    PatientRefProblem,
    pattern_detail,
    pattern_problem,
    schema_problem,
)
from schemas.visit import TherapyVisitCompleted

#: Default record size limit. A real visit event is 1-5 KB; 1 MiB is generous and keeps a
#: runaway producer from pinning the worker's memory. Configurable in the worker settings.
DEFAULT_MAX_BYTES = 1_048_576
SUPPORTED_VERSIONS = (1,)
_MAX_ERRORS_IN_DETAIL = 5


#: Byte-order marks, by the encoding they announce. RFC 8259 sec. 8.1: JSON sent over a network
#: is UTF-8 and "MUST NOT" begin with a BOM (parsers MAY ignore one: ours do not).
UTF8_BOM = b"\xef\xbb\xbf"
_BOMS = (
    (
        UTF8_BOM,
        "a UTF-8 byte-order mark (EF BB BF): remove it, JSON records must not begin with one",
    ),
    (
        b"\xff\xfe",
        "a UTF-16 little-endian byte-order mark: the record is UTF-16, JSON must be UTF-8",
    ),
    (b"\xfe\xff", "a UTF-16 big-endian byte-order mark: the record is UTF-16, JSON must be UTF-8"),
)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: DeadLetterReason
    detail: str
    #: Set when the record was refused for its patient_ref (a metric counts these by problem).
    patient_ref: PatientRefProblem | None = None


def decode_visit(
    raw: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    patient_ref_pattern: re.Pattern[str] = DEFAULT_PATTERN,
) -> TherapyVisitCompleted | Rejection:
    """Validate one record's value. Never raises for bad input. `patient_ref_pattern`: the
    accepted alphabet of patient_ref (schemas/patient_ref.py; matched against the whole value)."""
    if len(raw) > max_bytes:
        return Rejection(
            DeadLetterReason.TOO_LARGE, f"record is {len(raw)} bytes; the limit is {max_bytes}"
        )
    try:
        visit = TherapyVisitCompleted.model_validate_json(raw)
    except ValidationError as exc:
        return _also_patient_ref(_classify(raw, exc), raw, patient_ref_pattern)
    duplicate = duplicate_key_detail(raw)
    if duplicate is not None:
        return _also_patient_ref(
            Rejection(DeadLetterReason.SCHEMA_VIOLATION, duplicate), raw, patient_ref_pattern
        )
    problem = pattern_problem(visit.patient_ref, patient_ref_pattern)
    if problem is not None:
        return Rejection(DeadLetterReason.SCHEMA_VIOLATION, pattern_detail(problem), problem)
    return visit


#: The contract's OpaqueRef (schemas/common.py): printable ASCII, 1-128 characters.
_SCHEMA_REF = re.compile(r"[\x20-\x7E]{1,128}")


def _also_patient_ref(rejection: Rejection, raw: bytes, pattern: re.Pattern[str]) -> Rejection:
    """A record refused for another reason whose patient_ref is outside the accepted alphabet
    too: still counted by that problem (a leak is a leak whatever else is wrong with the
    record); the detail stays the first error. Rare path: the record is already refused."""
    if (
        rejection.patient_ref is not None
        or rejection.reason is not DeadLetterReason.SCHEMA_VIOLATION
    ):
        return rejection
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return rejection
    ref = data.get("patient_ref") if isinstance(data, dict) else None
    if not isinstance(ref, str) or _SCHEMA_REF.fullmatch(ref) is None:
        return rejection  # the schema's own checks name that problem
    problem = pattern_problem(ref, pattern)
    return rejection if problem is None else replace(rejection, patient_ref=problem)


def _classify(raw: bytes, exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_context=False)
    for err in errors:
        if err["type"] == "json_invalid":
            for bom, what in _BOMS:
                if raw.startswith(bom):
                    return Rejection(
                        DeadLetterReason.INVALID_JSON,
                        f"not valid JSON: the record starts with {what}",
                    )
            # The parser's message names the position and the problem, not the content.
            return Rejection(DeadLetterReason.INVALID_JSON, f"not valid JSON: {err['msg']}")
        if err["type"] == "model_type":
            return Rejection(
                DeadLetterReason.SCHEMA_VIOLATION, "the record is valid JSON but not a JSON object"
            )
    # A duplicate key explains any other error (which value the validator saw was chance).
    duplicate = duplicate_key_detail(raw)
    if duplicate is not None:
        return Rejection(DeadLetterReason.SCHEMA_VIOLATION, duplicate)
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
    return Rejection(
        DeadLetterReason.SCHEMA_VIOLATION, describe_errors(errors), schema_problem(errors)
    )


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
