"""KX modifier thresholds (`data/kx_thresholds.toml`), validated at load: per calendar year the
amount for PT and SLP combined and the amount for OT, each with its source, and the share of
the threshold below which KX is premature. Amounts are held in cents (integers): accrual sums
many lines and must not drift."""

from __future__ import annotations

import tomllib
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.common import Usd
from schemas.decode import describe_errors


class KxBucket(StrEnum):
    """The two threshold buckets: PT and SLP accrue together, OT alone (Pub. 100-04, Ch. 5,
    sec. 10.3)."""

    PT_SLP = "PT_SLP"
    OT = "OT"

    @classmethod
    def of(cls, discipline: str) -> KxBucket:
        return cls.OT if discipline == "OT" else cls.PT_SLP


class KxThresholdError(ValueError):
    """The threshold file is inconsistent; the message names the entry."""


class _Premature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    share_percent: Annotated[int, Field(ge=1, le=100)]
    source: Annotated[str, StringConstraints(min_length=10)]


class YearThreshold(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    year: Annotated[int, Field(ge=2018, le=2100)]
    pt_slp: Usd
    ot: Usd
    evidence: Literal["cms", "mac", "secondary"]
    source: Annotated[str, StringConstraints(min_length=10)]


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    premature: _Premature
    threshold: Annotated[list[YearThreshold], Field(min_length=1)]


def to_cents(amount: Decimal) -> int:
    """USD -> integer cents, half up (the alerts' `money` rounding)."""
    return int(amount.scaleb(2).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class KxThresholds:
    __slots__ = ("_cents", "by_year", "premature_share_percent", "premature_source")

    def __init__(self, rows: list[YearThreshold], premature: _Premature) -> None:
        by_year: dict[int, YearThreshold] = {}
        for row in rows:
            if row.year in by_year:
                raise KxThresholdError(f"kx_thresholds.toml: year {row.year} appears twice")
            for name, value in (("pt_slp", row.pt_slp), ("ot", row.ot)):
                if Decimal(value) <= 0:
                    raise KxThresholdError(f"kx_thresholds.toml: {row.year} {name} must be > 0")
            by_year[row.year] = row
        self.by_year = by_year
        self._cents = {
            (y, b): to_cents(Decimal(r.pt_slp if b is KxBucket.PT_SLP else r.ot))
            for y, r in by_year.items()
            for b in KxBucket
        }
        self.premature_share_percent = premature.share_percent
        self.premature_source = premature.source

    def cents(self, year: int, bucket: KxBucket) -> int | None:
        """The threshold in cents, or None for a year without data (no KX check)."""
        return self._cents.get((year, bucket))

    def source(self, year: int) -> str:
        row = self.by_year[year]
        return f"{row.source} [evidence: {row.evidence}]"


def parse_kx_thresholds(text: str) -> KxThresholds:
    try:
        raw = _File.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise KxThresholdError(f"kx_thresholds.toml: {exc}") from exc
    except ValidationError as exc:
        raise KxThresholdError(f"kx_thresholds.toml: {describe_errors(exc.errors())}") from exc
    return KxThresholds(raw.threshold, raw.premature)


__all__ = [
    "KxBucket",
    "KxThresholdError",
    "KxThresholds",
    "YearThreshold",
    "parse_kx_thresholds",
    "to_cents",
]
