"""Typed rejections: a machine reason and a human detail naming the segment/field or element; and
warnings: input that is read on without a part (not ours to convert), counted and logged.

Details never quote PID content or any other patient data; at most they quote a local code the
profile could not map (a department, a document type), so an operator can fix the table.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class RejectReason(StrEnum):
    NOT_HL7 = "not_hl7"
    NOT_FHIR = "not_fhir"
    BAD_CHARSET = "bad_charset"
    UNSUPPORTED_TYPE = "unsupported_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_SENDER = "unknown_sender"
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"
    UNMAPPED_CODE = "unmapped_code"
    UNSUPPORTED_TRANSACTION = "unsupported_transaction"
    NOT_THERAPY = "not_therapy"
    NOT_A_VISIT = "not_a_visit"
    NO_PROCEDURE_CODE = "no_procedure_code"
    #: A FHIR searchset whose OperationOutcome says the search failed (error, fatal).
    SEARCH_FAILED = "search_failed"
    #: A credit (FT1-6 CD, table 0017) finds no charges or no matching line to take units off.
    CREDIT_UNMATCHED = "credit_unmatched"
    #: A credit would take a charged line below zero units.
    CREDIT_BELOW_ZERO = "credit_below_zero"
    #: A credit would leave the visit with no charged units.
    CREDIT_EMPTIES_VISIT = "credit_empties_visit"
    #: The join: an HL7 MSH-10 the visit already took with other content (ehr/join.py).
    CONTROL_ID_CONFLICT = "control_id_conflict"


class Problem(BaseModel):
    """One thing wrong with a message. segment/sequence/field locate it for an HL7 ERR-2."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: RejectReason
    detail: str
    segment: str | None = None
    sequence: int | None = None
    field: int | None = None


class Rejection(BaseModel):
    """A message (or FHIR resource) that was not accepted. `reason` is the first problem's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: RejectReason
    detail: str
    problems: tuple[Problem, ...] = ()
    message_id: str | None = None
    #: The FHIR bundle entry (1-based) or NDJSON line the rejection is about, when it is one.
    entry: int | None = None

    @classmethod
    def of(
        cls, problems: list[Problem], message_id: str | None = None, *, entry: int | None = None
    ) -> Rejection:
        assert problems, "a rejection needs at least one problem"
        return cls(
            reason=problems[0].reason,
            detail="; ".join(p.detail for p in problems),
            problems=tuple(problems),
            message_id=message_id,
            entry=entry,
        )

    @classmethod
    def one(
        cls,
        reason: RejectReason,
        detail: str,
        message_id: str | None = None,
        *,
        segment: str | None = None,
        sequence: int | None = None,
        field: int | None = None,
        entry: int | None = None,
    ) -> Rejection:
        problem = Problem(
            reason=reason, detail=detail, segment=segment, sequence=sequence, field=field
        )
        return cls.of([problem], message_id, entry=entry)


class WarnReason(StrEnum):
    #: A completed FHIR Procedure whose code is not a therapy code: not documentation.
    NOT_THERAPY_PROCEDURE = "not_therapy_procedure"
    #: An OperationOutcome a searchset carries (search.mode outcome) with no error in it.
    SEARCH_OUTCOME = "search_outcome"
    #: A searchset with no match or include entry (an empty search result page).
    SEARCH_EMPTY = "search_empty"
    #: A searchset page with a `next` link: the rest of the result is not in this bundle.
    SEARCH_PAGED = "search_paged"


class EhrWarning(BaseModel):
    """Something in an accepted message that was deliberately not converted. `message_id` is an
    opaque ref to the resource (Type/id), never patient data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: WarnReason
    detail: str
    message_id: str | None = None


def shown(code: str, limit: int = 24) -> str:
    """A local code quoted in a detail: printable ASCII only, truncated."""
    clean = "".join(ch if "\x20" <= ch <= "\x7e" else "?" for ch in code)
    return repr(clean[:limit] + ("..." if len(clean) > limit else ""))
