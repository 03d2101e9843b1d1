"""Findings: what a rule reports about a visit, before it becomes a `ComplianceAlert`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
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
    # v1 additions: claim-level rules (EVENTS.md "v1 additions").
    ASSISTANT_MODIFIER_MISSING = "ASSISTANT_MODIFIER_MISSING"
    ASSISTANT_MODIFIER_UNPAIRED = "ASSISTANT_MODIFIER_UNPAIRED"
    NCCI_PTP_CONFLICT = "NCCI_PTP_CONFLICT"
    MUE_EXCEEDED = "MUE_EXCEEDED"
    EVALUATION_DUPLICATE = "EVALUATION_DUPLICATE"
    ADD_ON_CODE_WITHOUT_PRIMARY = "ADD_ON_CODE_WITHOUT_PRIMARY"
    # v1 additions: episodes of care and the KX threshold (EVENTS.md "v1 additions").
    PROGRESS_REPORT_OVERDUE = "PROGRESS_REPORT_OVERDUE"
    PROGRESS_REPORT_BY_ASSISTANT = "PROGRESS_REPORT_BY_ASSISTANT"
    PLAN_OF_CARE_MISSING = "PLAN_OF_CARE_MISSING"
    CERTIFICATION_MISSING = "CERTIFICATION_MISSING"
    RECERTIFICATION_MISSING = "RECERTIFICATION_MISSING"
    KX_MODIFIER_MISSING = "KX_MODIFIER_MISSING"
    KX_MODIFIER_PREMATURE = "KX_MODIFIER_PREMATURE"
    # Additive (EVENTS.md "Other additive rule ids"): a visit assembled from EHR feeds had only
    # one of its two parts when the join's wait expired (ehr/join.py, `parts_missing`).
    CHARGES_NOT_RECEIVED = "CHARGES_NOT_RECEIVED"
    DOCUMENTATION_NOT_RECEIVED = "DOCUMENTATION_NOT_RECEIVED"
    # Additive (EVENTS.md "Other additive rule ids"): the rendering NPI fails its check digit.
    RENDERING_NPI_INVALID = "RENDERING_NPI_INVALID"


#: Severity is fixed per rule by the contract, so it is data here, not a choice inside each rule
#: (the one exception: TIMED_MINUTES_MISSING is `info` under the CMS rule with a documented
#: total, see `Finding.severity_override`).
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
    RuleId.ASSISTANT_MODIFIER_MISSING: Severity.ERROR,
    RuleId.ASSISTANT_MODIFIER_UNPAIRED: Severity.ERROR,
    RuleId.NCCI_PTP_CONFLICT: Severity.ERROR,
    RuleId.MUE_EXCEEDED: Severity.ERROR,
    RuleId.EVALUATION_DUPLICATE: Severity.ERROR,
    RuleId.ADD_ON_CODE_WITHOUT_PRIMARY: Severity.ERROR,
    RuleId.PROGRESS_REPORT_OVERDUE: Severity.ERROR,
    RuleId.PROGRESS_REPORT_BY_ASSISTANT: Severity.WARNING,
    RuleId.PLAN_OF_CARE_MISSING: Severity.ERROR,
    RuleId.CERTIFICATION_MISSING: Severity.ERROR,
    RuleId.RECERTIFICATION_MISSING: Severity.ERROR,
    RuleId.KX_MODIFIER_MISSING: Severity.ERROR,
    RuleId.KX_MODIFIER_PREMATURE: Severity.WARNING,
    RuleId.CHARGES_NOT_RECEIVED: Severity.WARNING,
    RuleId.DOCUMENTATION_NOT_RECEIVED: Severity.WARNING,
    RuleId.RENDERING_NPI_INVALID: Severity.ERROR,
}

#: Primary sources, cited in every alert's `reference`.
CMS_UNITS = "CMS Pub. 100-04, Ch. 5, sec. 20.2"
CMS_DOCUMENTATION = "CMS Pub. 100-02, Ch. 15, sec. 220.3"
CMS_MODIFIERS = "CMS Pub. 100-04, Ch. 5, sec. 20.1"
AMA_TIME_RULE = (
    "AMA CPT time rule: a unit is attained when the midpoint (8 of 15 minutes) is passed"
)
CPT_ADD_ON = "CPT add-on code convention (reported in addition to the primary procedure)"
NCCI_EVALUATIONS = "NCCI Policy Manual for Medicare Services, Ch. XI, sec. P.1"
NCCI_MODIFIERS = "NCCI Policy Manual for Medicare Services, Ch. I, sec. E (modifier indicator)"
CMS_NPI = (
    "CMS 'Requirements for National Provider Identifier (NPI) and NPI Check Digit'; NPI final "
    "rule, 69 FR 3434 (2004-01-23)"
)
CMS_ASSISTANTS = (
    "CMS Pub. 100-04, Ch. 5, sec. 20.1; CMS 'Billing Examples Using CQ/CO Modifiers for "
    "Services Furnished In Whole or In Part by PTAs and OTAs'"
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
    #: USD the finding puts at risk (docs/rules.md "Revenue at risk"); None when unknown.
    amount_at_risk: Decimal | None = None
    severity_override: Severity | None = None

    @property
    def severity(self) -> Severity:
        return self.severity_override or SEVERITY[self.rule_id]
