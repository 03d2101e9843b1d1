"""Episode-of-care rule data (`data/episode_policy.toml`), validated at load: the progress-report
period and who may write the report, the certification and recertification windows, the CY 2025
referral exception. Payer scope lives in the payer policies."""

from __future__ import annotations

import tomllib
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.common import Credential
from schemas.decode import describe_errors

_Source = Annotated[str, StringConstraints(min_length=10)]
_Days = Annotated[int, Field(ge=1, le=366)]
_STRICT = ConfigDict(frozen=True, extra="forbid")


class EpisodePolicyError(ValueError):
    """The episode policy file is inconsistent; the message names the entry."""


class ProgressReportPolicy(BaseModel):
    model_config = _STRICT

    max_treatment_days: _Days
    clinicians: Annotated[frozenset[Credential], Field(min_length=1)]
    assistants: Annotated[frozenset[Credential], Field(min_length=1)]
    source: _Source


class PlanOfCarePolicy(BaseModel):
    model_config = _STRICT

    source: _Source


class CertificationPolicy(BaseModel):
    model_config = _STRICT

    within_days: _Days
    verbal_order_days: _Days
    source: _Source


class RecertificationPolicy(BaseModel):
    model_config = _STRICT

    max_interval_days: _Days
    source: _Source


class ReferralException(BaseModel):
    model_config = _STRICT

    effective_from: date
    plan_sent_within_days: _Days
    source: _Source


class EpisodePolicy(BaseModel):
    model_config = _STRICT

    progress_report: ProgressReportPolicy
    plan_of_care: PlanOfCarePolicy
    certification: CertificationPolicy
    recertification: RecertificationPolicy
    referral_exception: ReferralException


def parse_episode_policy(text: str) -> EpisodePolicy:
    try:
        policy = EpisodePolicy.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise EpisodePolicyError(f"episode_policy.toml: {exc}") from exc
    except ValidationError as exc:
        raise EpisodePolicyError(f"episode_policy.toml: {describe_errors(exc.errors())}") from exc
    both = policy.progress_report.clinicians & policy.progress_report.assistants
    if both:
        names = ", ".join(sorted(c.value for c in both))
        raise EpisodePolicyError(
            f"episode_policy.toml: progress_report: {names} listed as clinician and assistant"
        )
    return policy


__all__ = [
    "CertificationPolicy",
    "EpisodePolicy",
    "EpisodePolicyError",
    "PlanOfCarePolicy",
    "ProgressReportPolicy",
    "RecertificationPolicy",
    "ReferralException",
    "parse_episode_policy",
]
