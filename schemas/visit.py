"""`TherapyVisitCompleted` v1, the inbound event (EVENTS.md, "TherapyVisitCompleted v1").

Unknown extra fields are *ignored*, not rejected: the contract says additive changes (new optional
fields) keep v1, so a producer that starts sending a new optional field must not have its visits
dead-lettered by a consumer that does not know it yet. Everything the contract names is strict:
no type coercion ("2" is not 2), enums closed, required fields required.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.common import (
    Credential,
    Discipline,
    DocumentKind,
    Minutes,
    Modifier,
    Npi,
    OpaqueRef,
    PayerKind,
    ProcedureCode,
    UnitRule,
    Usd,
)

#: A visit with more service lines than this is a broken feed, not a busy day (a long therapy
#: visit bills well under 20 lines). Rejecting keeps one record from monopolising the worker.
MAX_SERVICE_LINES = 100
MAX_DOCUMENTS = 100

_INBOUND = ConfigDict(strict=True, extra="ignore", frozen=True)


class Payer(BaseModel):
    model_config = _INBOUND

    payer_id: OpaqueRef
    kind: PayerKind
    unit_rule: UnitRule | None = None


class RenderingProvider(BaseModel):
    model_config = _INBOUND

    npi: Npi
    credential: Credential


class ServiceLine(BaseModel):
    model_config = _INBOUND

    line_id: OpaqueRef
    cpt: ProcedureCode
    units: Annotated[int, Field(ge=0, le=96)]
    minutes: Minutes | None = None
    modifiers: Annotated[list[Modifier], Field(max_length=4)] = Field(default_factory=list)
    furnished_by: Credential | None = None
    # v1 additions: minutes of this line furnished by a PTA/OTA separately from the therapist
    # (CQ/CO de minimis rule), and the payer's allowed amount for the whole line.
    assistant_minutes: Minutes | None = None
    allowed_amount: Usd | None = None

    @model_validator(mode="after")
    def _assistant_within_line(self) -> ServiceLine:
        if (
            self.assistant_minutes is not None
            and self.minutes is not None
            and self.assistant_minutes > self.minutes
        ):
            raise ValueError("assistant_minutes exceeds the line's minutes")
        return self


class Document(BaseModel):
    model_config = _INBOUND

    doc_id: OpaqueRef
    kind: DocumentKind
    cpt: ProcedureCode | None = None
    signed_at: AwareDatetime | None = None
    author_credential: Credential | None = None
    # v1 additions (episodes of care). `document_date`: the date the document refers to
    # (default: the visit's date of service).
    document_date: date | None = None
    plan_start: date | None = None
    plan_end: date | None = None
    sent_to_certifier_at: AwareDatetime | None = None
    verbal_order_at: AwareDatetime | None = None
    covers_from: date | None = None
    covers_through: date | None = None
    delay_reason_documented: bool | None = None
    #: A referral names the therapy discipline it orders.
    discipline: Discipline | None = None

    @model_validator(mode="after")
    def _intervals_ordered(self) -> Document:
        for start, end, name in (
            (self.plan_start, self.plan_end, "plan_end is before plan_start"),
            (self.covers_from, self.covers_through, "covers_through is before covers_from"),
        ):
            if start is not None and end is not None and end < start:
                raise ValueError(name)
        return self


class TherapyVisitCompleted(BaseModel):
    model_config = _INBOUND

    schema_version: Literal[1]
    event_id: OpaqueRef
    occurred_at: AwareDatetime
    visit_id: OpaqueRef
    patient_ref: OpaqueRef
    date_of_service: date
    discipline: Discipline
    payer: Payer
    rendering_provider: RenderingProvider
    services: Annotated[list[ServiceLine], Field(max_length=MAX_SERVICE_LINES)]
    total_timed_minutes: Minutes | None = None
    total_treatment_minutes: Minutes | None = None
    documents: Annotated[list[Document], Field(max_length=MAX_DOCUMENTS)] = Field(
        default_factory=list
    )
    # v1 additions: the episode of care (one plan of care for one discipline), when the EHR
    # knows it, and the episode's first day.
    episode_ref: OpaqueRef | None = None
    episode_start_date: date | None = None
    # Additive: set only on a visit the EHR join emitted with one part after its wait (ehr/join
    # .py): which half never arrived. The checks report it instead of what it makes unknowable.
    parts_missing: (
        Annotated[list[Literal["charges", "documentation"]], Field(min_length=1, max_length=2)]
        | None
    ) = None

    @model_validator(mode="after")
    def _consistent(self) -> TherapyVisitCompleted:
        seen: set[str] = set()
        for line in self.services:
            if line.line_id in seen:
                # The id is an opaque line number, not PHI; naming it helps the sender fix it.
                raise ValueError(f"services: duplicate line_id {line.line_id!r}")
            seen.add(line.line_id)
        # A visit cannot be completed before it happened. One day of slack covers time zones:
        # occurred_at is UTC, date_of_service is the clinic's local date.
        if self.date_of_service > self.occurred_at.date() + timedelta(days=1):
            raise ValueError(
                "date_of_service is after occurred_at (a visit completed before it happened)"
            )
        return self
