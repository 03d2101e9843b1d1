"""The alphabet accepted for `patient_ref` (the worker's TC_PATIENT_REF_PATTERN, audit's
--patient-ref-pattern), and why a reference was refused. Pure.

EVENTS.md: "`patient_ref`, `visit_id`: opaque references. Never a name, MRN, SSN or date of
birth." The schema (`OpaqueRef`) admits any printable ASCII of 1-128 characters, so
`Jane Doe 1960-01-01` passed. The pattern narrows that alphabet (it cannot widen it: the schema
still applies first); the default refuses spaces, which every name-and-date leak carries and no
opaque id needs. A deployment knowing its producers' format can be exact, e.g. `P-[0-9a-f]{20}`
for references the EHR path derives (ehr/patient.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum

from pydantic_core import ErrorDetails

#: Printable ASCII without the space (0x21-0x7E); lengths stay the schema's (1-128).
DEFAULT_PATIENT_REF_PATTERN = r"[\x21-\x7E]+"


class PatientRefProblem(StrEnum):
    """Why a patient_ref was refused: the label of a metric, never the value."""

    #: Contains a space and the pattern does not allow one (a name, "Doe 1960-01-01" ...).
    SPACE = "space"
    #: Outside TC_PATIENT_REF_PATTERN otherwise.
    PATTERN = "pattern"
    #: Not printable ASCII (the schema): control characters, non-ASCII letters.
    CHARSET = "charset"
    #: Empty or longer than 128 characters (the schema).
    LENGTH = "length"
    #: Not a JSON string.
    TYPE = "type"


def compile_pattern(text: str) -> re.Pattern[str]:
    """The compiled pattern (matched against the whole reference), or ValueError naming the
    problem: a setting that cannot be used stops the worker at start."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if pattern.fullmatch("") is not None:
        raise ValueError("the pattern matches an empty reference; use + rather than *")
    return pattern


DEFAULT_PATTERN = compile_pattern(DEFAULT_PATIENT_REF_PATTERN)


def pattern_problem(ref: str, pattern: re.Pattern[str]) -> PatientRefProblem | None:
    """None when `ref` (already valid under the schema) is in the accepted alphabet."""
    if pattern.fullmatch(ref) is not None:
        return None
    return PatientRefProblem.SPACE if " " in ref else PatientRefProblem.PATTERN


def pattern_detail(problem: PatientRefProblem) -> str:
    """Dead-letter detail: names the field and the rule, never the value."""
    if problem is PatientRefProblem.SPACE:
        what = "contains a space (a name or a date of birth?)"
    else:
        what = "is outside the accepted alphabet"
    return (
        f"patient_ref: {what}; the contract allows opaque references only, never a name, MRN, "
        "SSN or date of birth (TC_PATIENT_REF_PATTERN)"
    )


_SCHEMA_PROBLEMS = {
    "string_pattern_mismatch": PatientRefProblem.CHARSET,
    "string_too_short": PatientRefProblem.LENGTH,
    "string_too_long": PatientRefProblem.LENGTH,
    "string_type": PatientRefProblem.TYPE,
}


def schema_problem(errors: Sequence[ErrorDetails]) -> PatientRefProblem | None:
    """The schema's verdict on patient_ref among a record's validation errors, if any."""
    for err in errors:
        if err["loc"] == ("patient_ref",):
            return _SCHEMA_PROBLEMS.get(err["type"])
    return None
