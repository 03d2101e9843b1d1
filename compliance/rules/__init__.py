"""Rule families. Each is a pure function VisitContext -> findings; `RULES` is the run order."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from compliance.findings import Finding, RuleId
from compliance.rules.add_on import check_add_on_without_primary
from compliance.rules.assistants import check_assistant_modifiers
from compliance.rules.certification import check_certification
from compliance.rules.code_set import (
    check_code_valid_on_date,
    check_unknown_code,
    check_untimed_units,
)
from compliance.rules.context import VisitContext
from compliance.rules.evaluations import check_evaluation_duplicate
from compliance.rules.feed_parts import check_parts_received
from compliance.rules.kx import check_kx
from compliance.rules.modifiers import check_therapy_modifier
from compliance.rules.mue import check_mue
from compliance.rules.ncci import check_ncci_ptp
from compliance.rules.npi import check_rendering_npi
from compliance.rules.plan_of_care import check_plan_of_care
from compliance.rules.progress_reports import check_progress_reports
from compliance.rules.timed_totals import check_total_timed_minutes, check_treatment_time
from compliance.rules.timed_units import check_add_on_family_split, check_timed_units
from compliance.rules.written_report import check_written_report

Rule = Callable[[VisitContext], list[Finding]]

#: (rule family, the rule ids it can emit). Every contract rule id appears; one
#: (TIMED_UNITS_MISALLOCATED) in two families of different scopes.
RULES: tuple[tuple[Rule, tuple[RuleId, ...]], ...] = (
    (check_unknown_code, (RuleId.UNKNOWN_CODE,)),
    (check_code_valid_on_date, (RuleId.CODE_NOT_VALID_ON_DATE,)),
    (
        check_timed_units,
        (
            RuleId.TIMED_MINUTES_MISSING,
            RuleId.TIMED_UNITS_EXCEED_MINUTES,
            RuleId.TIMED_UNITS_BELOW_MINUTES,
            RuleId.TIMED_UNITS_MISALLOCATED,
        ),
    ),
    # The add-on family split (97129 once a day): reads the day's other visits.
    (check_add_on_family_split, (RuleId.TIMED_UNITS_MISALLOCATED,)),
    (check_total_timed_minutes, (RuleId.TOTAL_TIMED_MINUTES_MISMATCH,)),
    (check_treatment_time, (RuleId.TREATMENT_TIME_INCONSISTENT,)),
    (check_untimed_units, (RuleId.UNTIMED_CODE_MULTIPLE_UNITS,)),
    (check_written_report, (RuleId.WRITTEN_REPORT_MISSING,)),
    (check_therapy_modifier, (RuleId.THERAPY_MODIFIER_MISSING,)),
    (
        check_assistant_modifiers,
        (RuleId.ASSISTANT_MODIFIER_MISSING, RuleId.ASSISTANT_MODIFIER_UNPAIRED),
    ),
    (check_add_on_without_primary, (RuleId.ADD_ON_CODE_WITHOUT_PRIMARY,)),
    (check_evaluation_duplicate, (RuleId.EVALUATION_DUPLICATE,)),
    (check_ncci_ptp, (RuleId.NCCI_PTP_CONFLICT,)),
    (check_mue, (RuleId.MUE_EXCEEDED,)),
    # Episodes of care and the KX threshold: need a patient history (ctx.episode).
    (
        check_progress_reports,
        (RuleId.PROGRESS_REPORT_OVERDUE, RuleId.PROGRESS_REPORT_BY_ASSISTANT),
    ),
    (check_plan_of_care, (RuleId.PLAN_OF_CARE_MISSING,)),
    (check_certification, (RuleId.CERTIFICATION_MISSING, RuleId.RECERTIFICATION_MISSING)),
    (check_kx, (RuleId.KX_MODIFIER_MISSING, RuleId.KX_MODIFIER_PREMATURE)),
    # Visits the EHR join emitted with one part (ehr/join.py `parts_missing`).
    (check_parts_received, (RuleId.CHARGES_NOT_RECEIVED, RuleId.DOCUMENTATION_NOT_RECEIVED)),
    (check_rendering_npi, (RuleId.RENDERING_NPI_INVALID,)),
)

RULE_IDS: tuple[RuleId, ...] = tuple(dict.fromkeys(r for _, rs in RULES for r in rs))


class Scope(StrEnum):
    """What a rule family's verdict on a visit depends on (re-judgement, compliance/rejudge.py)."""

    #: The visit's own event only: changes only with the visit's own events.
    OWN = "own"
    #: The patient's other visits of the same date of service (NCCI/MUE/evaluation/add-on).
    DAY = "day"
    #: The visit's episode of care.
    EPISODE = "episode"
    #: The patient's KX accrual for the year.
    KX = "kx"


_SCOPES: dict[Rule, Scope] = {
    check_add_on_family_split: Scope.DAY,
    check_add_on_without_primary: Scope.DAY,
    check_evaluation_duplicate: Scope.DAY,
    check_ncci_ptp: Scope.DAY,
    check_mue: Scope.DAY,
    check_progress_reports: Scope.EPISODE,
    check_plan_of_care: Scope.EPISODE,
    check_certification: Scope.EPISODE,
    check_kx: Scope.KX,
}
#: Every rule family with its scope, in run order.
SCOPED_RULES: tuple[tuple[Rule, Scope], ...] = tuple(
    (rule, _SCOPES.get(rule, Scope.OWN)) for rule, _ in RULES
)


def rules_of(scopes: frozenset[Scope]) -> tuple[tuple[Rule, Scope], ...]:
    """The rule families of these scopes, in run order."""
    return tuple((rule, scope) for rule, scope in SCOPED_RULES if scope in scopes)


__all__ = ["RULES", "RULE_IDS", "SCOPED_RULES", "Rule", "Scope", "VisitContext", "rules_of"]
