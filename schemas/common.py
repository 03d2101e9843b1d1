"""Enumerations and constrained types shared by the v1 event contracts (../shared/design/EVENTS.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

#: Opaque references (visit, patient, event, line ids). Printable ASCII only: this keeps control
#: characters, NULs and look-alike Unicode out of keys, logs and alert ids.
OpaqueRef = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x20-\x7E]+$")
]
#: A CPT or HCPCS level II code: five characters, digits or capital letters (97110, G0283).
ProcedureCode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{5}$")]
#: A CPT/HCPCS modifier: two characters (GP, GO, GN, CQ, CO, KX, 59 ...).
Modifier = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{2}$")]
#: A National Provider Identifier: ten digits.
Npi = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
#: Minutes of one visit. A day has 1,440; anything above is a data error, not a long visit.
Minutes = Annotated[int, Field(ge=0, le=1440)]
#: A US-dollar amount as a decimal string ("123.45"): JSON numbers are binary floats, and money
#: must not round. At most 9 integer digits and 4 decimals (payer files carry 2 to 4).
Usd = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}(\.[0-9]{1,4})?$")]


class Discipline(StrEnum):
    PT = "PT"
    OT = "OT"
    SLP = "SLP"


class PayerKind(StrEnum):
    MEDICARE = "medicare"
    MEDICARE_ADVANTAGE = "medicare_advantage"
    MEDICAID = "medicaid"
    COMMERCIAL = "commercial"
    WORKERS_COMP = "workers_comp"
    OTHER = "other"


class UnitRule(StrEnum):
    CMS_8_MINUTE = "cms_8_minute"
    AMA_MIDPOINT = "ama_midpoint"


class Credential(StrEnum):
    PT = "PT"
    PTA = "PTA"
    OT = "OT"
    OTA = "OTA"
    SLP = "SLP"
    SLPA = "SLPA"
    MD = "MD"
    DO = "DO"
    NP = "NP"
    PA = "PA"
    ATC = "ATC"
    OTHER = "OTHER"


class DocumentKind(StrEnum):
    WRITTEN_REPORT = "written_report"
    EVALUATION = "evaluation"
    PROGRESS_REPORT = "progress_report"
    PLAN_OF_CARE = "plan_of_care"
    DAILY_NOTE = "daily_note"
    OTHER = "other"
    # v1 additions (EVENTS.md, "v1 additions"): episodes of care.
    CERTIFICATION = "certification"
    REFERRAL = "referral"
    DISCHARGE_SUMMARY = "discharge_summary"
    RE_EVALUATION = "re_evaluation"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class VisitStatus(StrEnum):
    CLEAN = "clean"
    FLAGGED = "flagged"


class DeadLetterReason(StrEnum):
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    PROCESSING_ERROR = "processing_error"
