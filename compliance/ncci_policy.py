"""NCCI policy statements shipped as data (`data/ncci_policy.toml`), validated at load:
PTP pairs stated by the NCCI Policy Manual (Ch. XI sec. P.8) and the evaluation limit
(sec. P.1)."""

from __future__ import annotations

import tomllib
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from compliance.catalog import Evaluates
from compliance.ncci_ptp import ModifierIndicator, PtpEdit
from schemas.decode import describe_errors

_Code = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{5}$")]


class NcciPolicyError(ValueError):
    """The NCCI policy file is inconsistent; the message names the entry."""


class _Ptp(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    column1: Annotated[list[_Code], Field(min_length=1)]
    column2: Annotated[list[_Code], Field(min_length=1)]
    modifier_indicator: ModifierIndicator
    effective_from: date
    effective_to: date | None = None
    source: Annotated[str, StringConstraints(min_length=10)]


class EvaluationLimit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    disciplines: Annotated[list[Evaluates], Field(min_length=1)]
    per_date_of_service: Annotated[int, Field(ge=1)]
    source: Annotated[str, StringConstraints(min_length=10)]


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ptp: list[_Ptp] = Field(default_factory=list)
    evaluation_limit: list[EvaluationLimit] = Field(default_factory=list)


class NcciPolicy:
    __slots__ = ("evaluation_limits", "ptp_edits")

    def __init__(self, ptp_edits: tuple[PtpEdit, ...], limits: tuple[EvaluationLimit, ...]):
        self.ptp_edits = ptp_edits
        self.evaluation_limits = limits

    def evaluation_limit(self, discipline: Evaluates) -> EvaluationLimit | None:
        for limit in self.evaluation_limits:
            if discipline in limit.disciplines:
                return limit
        return None


def parse_ncci_policy(text: str) -> NcciPolicy:
    try:
        raw = _File.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise NcciPolicyError(f"ncci_policy.toml: {exc}") from exc
    except ValidationError as exc:
        raise NcciPolicyError(f"ncci_policy.toml: {describe_errors(exc.errors())}") from exc
    edits: list[PtpEdit] = []
    seen: set[tuple[str, str]] = set()
    for entry in raw.ptp:
        if entry.modifier_indicator is ModifierIndicator.NOT_APPLICABLE:
            raise NcciPolicyError(f"ncci_policy.toml ({entry.source}): indicator 9 is not an edit")
        for c1 in entry.column1:
            for c2 in entry.column2:
                if c1 == c2 or (c1, c2) in seen:
                    raise NcciPolicyError(f"ncci_policy.toml: pair {c1}/{c2} repeated or reflexive")
                seen.add((c1, c2))
                edits.append(
                    PtpEdit(
                        c1,
                        c2,
                        entry.effective_from,
                        entry.effective_to,
                        entry.modifier_indicator,
                        "NCCI Policy Manual statement",
                        entry.source,
                    )
                )
    covered = [d for limit in raw.evaluation_limit for d in limit.disciplines]
    if len(covered) != len(set(covered)):
        raise NcciPolicyError("ncci_policy.toml: a discipline has two evaluation limits")
    return NcciPolicy(tuple(edits), tuple(raw.evaluation_limit))
