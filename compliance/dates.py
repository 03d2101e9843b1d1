"""Effective-date windows shared by the catalog and the payer policies."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, model_validator


class Effective(BaseModel):
    """An inclusive [effective_from, effective_to] window; None means open on that side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: date | None = None
    effective_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Effective:
        if (
            self.effective_from is not None
            and self.effective_to is not None
            and self.effective_to < self.effective_from
        ):
            raise ValueError(
                f"effective_to {self.effective_to} is before effective_from {self.effective_from}"
            )
        return self

    def in_effect(self, day: date) -> bool:
        if self.effective_from is not None and day < self.effective_from:
            return False
        return not (self.effective_to is not None and day > self.effective_to)
