"""`VisitChecked` v1: exactly one per accepted visit event, the audit trail (EVENTS.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.common import OpaqueRef, VisitStatus


class VisitChecked(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    visit_id: OpaqueRef
    event_id: OpaqueRef
    patient_ref: OpaqueRef
    date_of_service: date
    status: VisitStatus
    alert_ids: list[str]
    rules_evaluated: Annotated[int, Field(ge=0)]
    checked_at: AwareDatetime
    engine_version: str
    #: v1 addition: stable id of the rule data and engine version (optional for old records).
    ruleset_version: str | None = None
