"""The two halves of a visit as the EHR feeds deliver them, before the join.

Charges (HL7 DFT^P03, FHIR Claim/ChargeItem) and documentation (MDM^T02, ORU^R01, FHIR
Procedure/DocumentReference) arrive on different feeds at different times. Both are strict, frozen
and JSON-serialisable: they travel on a Kafka topic and sit in a table until the join assembles a
`TherapyVisitCompleted` v1 from them (ehr/join.py). Neither holds a name, MRN, birth date or
address: `patient_ref` is a keyed hash (ehr/patient.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from schemas.common import (
    Credential,
    Discipline,
    Minutes,
    Modifier,
    Npi,
    OpaqueRef,
    ProcedureCode,
    Usd,
)
from schemas.visit import MAX_DOCUMENTS, MAX_SERVICE_LINES, Document, Payer

_PART = ConfigDict(strict=True, frozen=True, extra="forbid")

Source = Literal["hl7v2", "fhir"]


class VisitKey(BaseModel):
    """Which visit a part belongs to: the sending facility and its visit (encounter) number."""

    model_config = _PART

    facility: OpaqueRef
    visit_number: OpaqueRef

    @property
    def text(self) -> str:
        """The table / Kafka key and the contract's `visit_id`."""
        return f"{self.facility}:{self.visit_number}"

    def on(self, day: date) -> VisitKey:
        """The visit of one day of a recurring (series) account: `<PV1-19>@<YYYY-MM-DD>`."""
        return VisitKey(facility=self.facility, visit_number=f"{self.visit_number}@{day}")


class PartVersion(BaseModel):
    """When the source produced this version (HL7 MSH-7; FHIR meta.lastUpdated or Bundle.timestamp)
    and its control id (MSH-10; FHIR Bundle.id/resource id + versionId). Orders corrections."""

    model_config = _PART

    at: AwareDatetime
    control_id: OpaqueRef
    #: HL7 v2 only: SHA-256 (hex) of the message itself, segment terminators normalised
    #: (ehr/hl7v2.py `message_sha256`), so the join's MSH-10 conflict check compares what was
    #: sent, not how this parser version and profile read it. Optional and additive: a part
    #: parsed before it existed (or a FHIR part) has None, and the check then does not apply.
    message_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class ChargeLine(BaseModel):
    model_config = _PART

    line_id: OpaqueRef
    cpt: ProcedureCode
    units: Annotated[int, Field(ge=0, le=96)]
    modifiers: Annotated[list[Modifier], Field(max_length=4)] = Field(default_factory=list)
    #: Minutes the charge itself states (HL7 PR1-7, FHIR extension); the note's minutes win.
    minutes: Minutes | None = None
    allowed_amount: Usd | None = None
    #: The sender's charge id (FT1-2, ChargeItem id), for tracing; not used by the join.
    transaction_id: OpaqueRef | None = None


class _DatedVisitPart(BaseModel):
    """The header a charge part and a credit part share: both are about one visit on one date of
    service. Each subclass narrows `part` to its own discriminator value; the field keeps its
    first place, so a part's JSON keeps its field order."""

    model_config = _PART

    part: str
    source: Source
    message_id: OpaqueRef
    version: PartVersion
    visit: VisitKey
    patient_ref: OpaqueRef
    date_of_service: date


class ChargePart(_DatedVisitPart):
    """The visit's full charge set. A newer version for the same visit replaces it whole, so a
    re-sent DFT never doubles the charges."""

    model_config = _PART

    part: Literal["charges"] = "charges"
    discipline: Discipline
    payer: Payer
    rendering_npi: Npi
    rendering_credential: Credential | None = None
    lines: Annotated[list[ChargeLine], Field(min_length=1, max_length=MAX_SERVICE_LINES)]


class CreditLine(BaseModel):
    """One FT1 with FT1-6 a credit type (HL7 table 0017 `CD`): units to take off a charged line."""

    model_config = _PART

    cpt: ProcedureCode
    units: Annotated[int, Field(ge=1, le=96)]
    modifiers: Annotated[list[Modifier], Field(max_length=4)] = Field(default_factory=list)
    #: FT1-31 Transaction Reference Key: the original charge's FT1-2 (transaction id).
    reference: OpaqueRef | None = None
    transaction_id: OpaqueRef | None = None
    #: The FT1's ordinal in its message (as the parser's "FT1#n"), so a refusal names the FT1
    #: the sender wrote; optional (a part parsed before it existed numbers lines in the part).
    position: Annotated[int, Field(ge=1)] | None = None


class CreditPart(_DatedVisitPart):
    """Credits against a visit's charges (a DFT whose lines are all credits). Unlike a ChargePart
    it does not replace the charges: the join subtracts its units from the matching lines of the
    charges it finds (ehr/credits.py), keyed by its own control id so a re-delivery counts once."""

    model_config = _PART

    part: Literal["credit"] = "credit"
    lines: Annotated[list[CreditLine], Field(min_length=1, max_length=MAX_SERVICE_LINES)]


class DocumentationPart(BaseModel):
    """One clinical source for the visit: an MDM document (TXA-12), an ORU result (OBR-3), a FHIR
    DocumentReference, or the FHIR Procedures of one encounter. `source_id` is the key under which
    the join keeps it: a newer version with the same key replaces it (MDM T08/T10), a cancelled one
    (MDM T11, TXA-19 CA/OB, FHIR entered-in-error) removes it."""

    model_config = _PART

    part: Literal["documentation"] = "documentation"
    source: Source
    message_id: OpaqueRef
    version: PartVersion
    visit: VisitKey
    patient_ref: OpaqueRef
    source_id: OpaqueRef
    status: Literal["active", "cancelled"] = "active"
    date_of_service: date | None = None
    discipline: Discipline | None = None
    author_npi: Npi | None = None
    author_credential: Credential | None = None
    minutes_by_cpt: dict[ProcedureCode, Minutes] = Field(default_factory=dict)
    assistant_minutes_by_cpt: dict[ProcedureCode, Minutes] = Field(default_factory=dict)
    total_timed_minutes: Minutes | None = None
    total_treatment_minutes: Minutes | None = None
    documents: Annotated[list[Document], Field(max_length=MAX_DOCUMENTS)] = Field(
        default_factory=list
    )
    episode_start_date: date | None = None

    @property
    def has_minutes(self) -> bool:
        return bool(
            self.minutes_by_cpt
            or self.total_timed_minutes is not None
            or self.total_treatment_minutes is not None
        )


AnyPart = ChargePart | CreditPart | DocumentationPart
Part = Annotated[AnyPart, Field(discriminator="part")]
#: Decode a part from its JSON (the Kafka value): `PART_ADAPTER.validate_json(raw)`.
PART_ADAPTER: TypeAdapter[AnyPart] = TypeAdapter(Part)
