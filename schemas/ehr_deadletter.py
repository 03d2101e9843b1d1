"""`EhrDeadLetter` v1 (topic `ehr.deadletter.v1`): one per HL7 v2 message or FHIR resource the EHR
path could not accept, with the reason and the original bytes for a replay after a fix.

A new contract beside `DeadLetter` v1 rather than new `DeadLetter` reasons: `DeadLetter.reason`
is a closed enum that strict consumers validate, so adding values would break them (EVENTS.md:
additive changes only). `reason` here is an EHR reason code (ehr/rejection.py `RejectReason`, plus
`bad_framing`, `too_large`, `processing_error`); `detail` names segments and fields, never patient
data.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.common import OpaqueRef

_OUTBOUND = ConfigDict(strict=True, extra="forbid", frozen=True)


class EhrSource(BaseModel):
    """Where the rejected input came from: an MLLP connection (the gateway) or a Kafka record."""

    model_config = _OUTBOUND

    via: Literal["mllp", "kafka"]
    topic: str | None = None
    partition: Annotated[int, Field(ge=0)] | None = None
    offset: Annotated[int, Field(ge=0)] | None = None
    #: Kafka record time, epoch ms.
    timestamp: int | None = None
    #: The sender's message control id (HL7 MSH-10), when it could be read.
    control_id: OpaqueRef | None = None


class EhrDeadLetter(BaseModel):
    model_config = _OUTBOUND

    schema_version: Literal[1] = 1
    format: Literal["hl7v2", "fhir"]
    reason: Annotated[str, Field(pattern=r"^[a-z0-9_]{3,40}$")]
    detail: str
    source: EhrSource
    value_b64: str | None
    rejected_at: AwareDatetime
