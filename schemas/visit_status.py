"""`VisitStatus` v1: one current truth per visit for billing (EVENTS.md, "VisitStatus v1").

Topic `billing.visit.status.v1`, key `visit_id`, compacted: a billing system reads it as a
table of visits (the highest `version` per visit wins) and holds or releases claims from it.
Not to be confused with `schemas.common.VisitStatus`, `VisitChecked`'s clean/flagged.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.common import Discipline, OpaqueRef, Severity, Usd

_OUTBOUND = ConfigDict(strict=True, extra="forbid", frozen=True)


class BillingStatus(StrEnum):
    #: An open alert of (effective) severity `error`: do not bill the visit.
    HOLD = "hold"
    #: Open `warning`s, no error: a person should look before billing.
    REVIEW = "review"
    #: No open alert, or `info` only: billable as far as this service knows.
    READY = "ready"


class StatusCause(StrEnum):
    VISIT = "visit"  # the visit's first event
    CORRECTION = "correction"  # a new event of this visit
    RELATED_VISIT = "related_visit"  # another visit of the patient changed what holds here


class OpenAlert(BaseModel):
    model_config = _OUTBOUND

    alert_id: str
    rule_id: str
    severity: Severity
    line_ids: list[OpaqueRef]
    amount_at_risk: Usd | None


class Cause(BaseModel):
    model_config = _OUTBOUND

    event_id: OpaqueRef
    visit_id: OpaqueRef
    kind: StatusCause


class VisitStatus(BaseModel):
    model_config = _OUTBOUND

    schema_version: Literal[1] = 1
    visit_id: OpaqueRef
    patient_ref: OpaqueRef
    date_of_service: date
    payer_id: OpaqueRef
    discipline: Discipline
    #: The visit's current event (the latest version of the visit the service has seen).
    event_id: OpaqueRef
    status: BillingStatus
    #: Every alert that holds for the visit given everything the service knows now.
    open_alerts: list[OpenAlert]
    #: Alerts open in this visit's previous status and no longer open (a delta).
    resolved_alert_ids: list[str]
    #: Sum of the open alerts' known amounts; None when none is known.
    amount_at_risk: Usd | None
    cause: Cause
    #: 1 for a visit's first status, +1 for each later one.
    version: Annotated[int, Field(ge=1)]
    ruleset_version: str
    engine_version: str
    updated_at: AwareDatetime
