"""Findings: what a rule reports about a visit, before it becomes a `ComplianceAlert`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas.common import Severity


class RuleId(StrEnum):
    """Rule ids billing systems key on (EVENTS.md, ComplianceAlert v1 table)."""

    TIMED_UNITS_EXCEED_MINUTES = "TIMED_UNITS_EXCEED_MINUTES"
    TIMED_UNITS_BELOW_MINUTES = "TIMED_UNITS_BELOW_MINUTES"
    TIMED_UNITS_MISALLOCATED = "TIMED_UNITS_MISALLOCATED"
    TIMED_MINUTES_MISSING = "TIMED_MINUTES_MISSING"
    TOTAL_TIMED_MINUTES_MISMATCH = "TOTAL_TIMED_MINUTES_MISMATCH"
    TREATMENT_TIME_INCONSISTENT = "TREATMENT_TIME_INCONSISTENT"
    WRITTEN_REPORT_MISSING = "WRITTEN_REPORT_MISSING"
    CODE_NOT_VALID_ON_DATE = "CODE_NOT_VALID_ON_DATE"
    UNTIMED_CODE_MULTIPLE_UNITS = "UNTIMED_CODE_MULTIPLE_UNITS"
    THERAPY_MODIFIER_MISSING = "THERAPY_MODIFIER_MISSING"
    UNKNOWN_CODE = "UNKNOWN_CODE"


#: Severity is fixed per rule by the contract, so it is data here, not a choice inside each rule.
SEVERITY: dict[RuleId, Severity] = {
    RuleId.TIMED_UNITS_EXCEED_MINUTES: Severity.ERROR,
    RuleId.TIMED_UNITS_BELOW_MINUTES: Severity.WARNING,
    RuleId.TIMED_UNITS_MISALLOCATED: Severity.ERROR,
    RuleId.TIMED_MINUTES_MISSING: Severity.WARNING,
    RuleId.TOTAL_TIMED_MINUTES_MISMATCH: Severity.ERROR,
    RuleId.TREATMENT_TIME_INCONSISTENT: Severity.ERROR,
    RuleId.WRITTEN_REPORT_MISSING: Severity.ERROR,
    RuleId.CODE_NOT_VALID_ON_DATE: Severity.ERROR,
    RuleId.UNTIMED_CODE_MULTIPLE_UNITS: Severity.ERROR,
    RuleId.THERAPY_MODIFIER_MISSING: Severity.ERROR,
    RuleId.UNKNOWN_CODE: Severity.WARNING,
}

#: Primary sources, cited in every alert's `reference`.
CMS_UNITS = "CMS Pub. 100-04, Ch. 5, sec. 20.2"
CMS_DOCUMENTATION = "CMS Pub. 100-02, Ch. 15, sec. 220.3"
CMS_MODIFIERS = "CMS Pub. 100-04, Ch. 5, sec. 20.1"
AMA_TIME_RULE = (
    "AMA CPT time rule: a unit is attained when the midpoint (8 of 15 minutes) is passed"
)


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: RuleId
    message: str
    reference: str
    line_ids: tuple[str, ...] = ()
    cpt: str | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.rule_id]
