"""`ComplianceAlert` v1, one per finding (EVENTS.md, "ComplianceAlert v1")."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.common import Discipline, OpaqueRef, ProcedureCode, Severity, Usd

#: Outbound events are produced by this service only, so they forbid unknown fields.
_OUTBOUND = ConfigDict(strict=True, extra="forbid", frozen=True)


class ComplianceAlert(BaseModel):
    model_config = _OUTBOUND

    schema_version: Literal[1] = 1
    alert_id: str
    rule_id: str
    severity: Severity
    visit_id: OpaqueRef
    event_id: OpaqueRef
    patient_ref: OpaqueRef
    date_of_service: date
    payer_id: OpaqueRef
    discipline: Discipline
    line_ids: list[OpaqueRef]
    cpt: ProcedureCode | None
    message: str
    expected: dict[str, Any]
    observed: dict[str, Any]
    reference: str
    detected_at: AwareDatetime
    engine_version: str
    # v1 additions (EVENTS.md): optional, so alerts published before them still validate.
    #: USD the finding puts at risk (decimal string), None when no amount is known.
    amount_at_risk: Usd | None = None
    #: Stable id of the rule data and engine version that produced the alert.
    ruleset_version: str | None = None
