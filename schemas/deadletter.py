"""`DeadLetter` v1: one per rejected record, carrying the original bytes for replay (EVENTS.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.common import DeadLetterReason


class SourceRecord(BaseModel):
    """Where the rejected record came from; `timestamp` is the Kafka record time in epoch ms."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    topic: str
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    timestamp: int | None = None


class DeadLetter(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    #: Human text naming what is wrong (field paths, limits); never payload contents.
    detail: str
    source: SourceRecord
    key_b64: str | None
    value_b64: str | None
    rejected_at: AwareDatetime
