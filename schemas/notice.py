"""`ComplianceNotice` v1: what falls due, before it is an alert (EVENTS.md, "ComplianceNotice v1").

Topic `clinic.compliance.notice.v1`, key `patient_ref`: for the clinic (therapists, schedulers),
what must be done and by when so that no alert is raised later. `notice_id` is deterministic
from the obligation (patient, episode, kind, identity), so a repeat is a duplicate.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.common import Discipline, OpaqueRef

_OUTBOUND = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoticeKind(StrEnum):
    PROGRESS_REPORT_DUE = "PROGRESS_REPORT_DUE"
    CERTIFICATION_DUE = "CERTIFICATION_DUE"
    VERBAL_ORDER_SIGNATURE_DUE = "VERBAL_ORDER_SIGNATURE_DUE"
    RECERTIFICATION_DUE = "RECERTIFICATION_DUE"
    KX_THRESHOLD_NEAR = "KX_THRESHOLD_NEAR"


class ComplianceNotice(BaseModel):
    model_config = _OUTBOUND

    schema_version: Literal[1] = 1
    notice_id: str
    kind: NoticeKind
    patient_ref: OpaqueRef
    #: The EHR's episode id; None for an episode the service delimits (patient, discipline).
    episode_ref: OpaqueRef | None
    discipline: Discipline
    payer_id: OpaqueRef
    #: The episode's first day (None for KX_THRESHOLD_NEAR: per patient and year, not episode).
    episode_start: date | None
    due_by: date | None
    due_at_treatment_day: int | None
    message: str
    observed: dict[str, Any]
    #: The date the obligation was judged as of (a visit's date of service or a daily run's).
    as_of: date
    created_at: AwareDatetime
