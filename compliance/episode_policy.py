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


class NoticePolicy(BaseModel):
    """Lead times of the ComplianceNotice kinds (EVENTS.md "ComplianceNotice v1")."""

    model_config = _STRICT

    progress_report_from_treatment_day: _Days
    certification_from_day: Annotated[int, Field(ge=0, le=366)]
    recertification_lead_days: Annotated[int, Field(ge=0, le=89)]
    kx_share_percent: Annotated[int, Field(ge=1, le=100)]
    source: _Source


class EpisodePolicy(BaseModel):
    model_config = _STRICT

    progress_report: ProgressReportPolicy
    plan_of_care: PlanOfCarePolicy
    certification: CertificationPolicy
    recertification: RecertificationPolicy
    referral_exception: ReferralException
    notices: NoticePolicy


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
    n = policy.notices
    if n.progress_report_from_treatment_day > policy.progress_report.max_treatment_days:
        raise EpisodePolicyError(
            "episode_policy.toml: notices: progress_report_from_treatment_day is after "
            "progress_report.max_treatment_days (the notice would come after the alert)"
        )
    if n.certification_from_day > policy.certification.within_days:
        raise EpisodePolicyError(
            "episode_policy.toml: notices: certification_from_day is after "
            "certification.within_days (the notice would come after the alert)"
        )
    return policy


__all__ = [
    "CertificationPolicy",
    "EpisodePolicy",
    "EpisodePolicyError",
    "NoticePolicy",
    "PlanOfCarePolicy",
    "ProgressReportPolicy",
    "RecertificationPolicy",
    "ReferralException",
    "parse_episode_policy",
]
