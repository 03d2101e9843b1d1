"""Payer policies (`data/payer_policies.toml`): which unit rule and whether GP/GO/GN are required.

Resolution order for a visit: the event's `payer.unit_rule`; a [[payer]] entry for its payer_id in
effect on the date of service; the [[kind]] entry for its payer kind (EVENTS.md defaults:
`cms_8_minute` for medicare, medicare_advantage and medicaid, `ama_midpoint` otherwise).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from itertools import pairwise
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from compliance.dates import Effective
from schemas.common import PayerKind, UnitRule
from schemas.decode import describe_errors
from schemas.visit import TherapyVisitCompleted


class PolicyError(ValueError):
    """The policy file is inconsistent; the message names the entry."""


class _Policy(Effective):
    model_config = ConfigDict(frozen=True, extra="forbid")

    unit_rule: UnitRule
    therapy_modifiers_required: bool
    #: The payer applies Medicare's claim rules (CQ/CO; EVENTS.md "Medicare" rules: progress
    #: reports, certification and recertification of the plan of care).
    follows_medicare: bool
    #: Original Medicare Part B: visits accrue toward the annual KX modifier threshold and the
    #: KX rules apply (CMS Pub. 100-04, Ch. 5, sec. 10.3). Absent in an older policy file: false.
    kx_threshold: bool = False
    #: PLAN_OF_CARE_MISSING applies (EVENTS.md names no payer scope for it; docs/rules.md).
    plan_of_care_required: bool = True
    #: KX_THRESHOLD_NEAR's share of the threshold for this payer (None: episode_policy.toml
    #: [notices] kx_share_percent).
    kx_notice_share_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    source: Annotated[str, StringConstraints(min_length=3)]


class AssistantModifiers(BaseModel):
    """CQ/CO policy (CMS Pub. 100-04, Ch. 5, sec. 20.1): from which date of service, and the
    de minimis share of a service's minutes an assistant may furnish without the modifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: date
    de_minimis_percent: Annotated[int, Field(ge=0, le=100)]
    #: The payment differential of assistant-furnished lines (85% from 2022-01-01).
    payment_reduction_percent: Annotated[int, Field(ge=0, le=100)] = 0
    payment_reduction_from: date | None = None
    source: Annotated[str, StringConstraints(min_length=3)]


class KindPolicy(_Policy):
    kind: PayerKind


class PayerPolicy(_Policy):
    payer_id: Annotated[str, StringConstraints(min_length=1)]


class _PolicyFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: list[KindPolicy]
    payer: list[PayerPolicy] = Field(default_factory=list)
    assistant_modifiers: AssistantModifiers


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    unit_rule: UnitRule
    therapy_modifiers_required: bool
    #: Where the unit rule came from: "event", "payer", or "kind" (shown in alert `expected`).
    unit_rule_origin: str
    follows_medicare: bool = False
    kx_threshold: bool = False
    plan_of_care_required: bool = True
    kx_notice_share_percent: int | None = None


class PayerPolicies:
    __slots__ = ("__weakref__", "_by_kind", "_by_payer", "assistant_modifiers")

    def __init__(
        self,
        kinds: list[KindPolicy],
        payers: list[PayerPolicy],
        assistant_modifiers: AssistantModifiers,
    ) -> None:
        self.assistant_modifiers = assistant_modifiers
        by_kind: dict[PayerKind, list[KindPolicy]] = {}
        for k in kinds:
            by_kind.setdefault(k.kind, []).append(k)
        missing = [k.value for k in PayerKind if k not in by_kind]
        if missing:
            raise PolicyError(f"no [[kind]] policy for payer kinds: {', '.join(missing)}")
        for kind, entries in by_kind.items():
            _check_no_gaps_or_overlaps(f"kind {kind.value}", entries, require_cover=True)
        by_payer: dict[str, list[PayerPolicy]] = {}
        for p in payers:
            by_payer.setdefault(p.payer_id, []).append(p)
        for payer_id, payer_entries in by_payer.items():
            _check_no_gaps_or_overlaps(f"payer {payer_id}", payer_entries, require_cover=False)
        self._by_kind = by_kind
        self._by_payer = by_payer

    def resolve_payer(self, payer_id: str, kind: PayerKind, day: date) -> ResolvedPolicy:
        """The policy of a payer on a date (no event: a stored record's payer)."""
        return self._resolve(payer_id, kind, None, day)

    def resolve(self, visit: TherapyVisitCompleted) -> ResolvedPolicy:
        payer = visit.payer
        return self._resolve(payer.payer_id, payer.kind, payer.unit_rule, visit.date_of_service)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - policies live as long as the process
    def _resolve(
        self, payer_id: str, kind: PayerKind, unit_rule: UnitRule | None, day: date
    ) -> ResolvedPolicy:
        policy: _Policy | None = _in_effect(self._by_payer.get(payer_id, []), day)
        origin = "payer"
        if policy is None:
            policy = _in_effect(self._by_kind[kind], day)
            origin = "kind"
        assert policy is not None  # every kind covers every date (checked at load)
        rule, origin = (unit_rule, "event") if unit_rule is not None else (policy.unit_rule, origin)
        return ResolvedPolicy(
            rule,
            policy.therapy_modifiers_required,
            origin,
            policy.follows_medicare,
            policy.kx_threshold,
            policy.plan_of_care_required,
            policy.kx_notice_share_percent,
        )


def _in_effect(entries: Sequence[_Policy], day: date) -> _Policy | None:
    for entry in entries:
        if entry.in_effect(day):
            return entry
    return None


def _check_no_gaps_or_overlaps(name: str, entries: Sequence[_Policy], require_cover: bool) -> None:
    ordered = sorted(entries, key=lambda e: e.effective_from or date.min)
    for prev, nxt in pairwise(ordered):
        prev_end = prev.effective_to or date.max
        nxt_start = nxt.effective_from or date.min
        if nxt_start <= prev_end:
            raise PolicyError(f"{name}: overlapping entries ({prev_end} >= {nxt_start})")
        if require_cover and (nxt_start - prev_end).days != 1:
            raise PolicyError(f"{name}: no policy between {prev_end} and {nxt_start}")
    if require_cover and (
        ordered[0].effective_from is not None or ordered[-1].effective_to is not None
    ):
        raise PolicyError(f"{name}: the entries must cover every date (open first and last ends)")


def parse_policies(text: str) -> PayerPolicies:
    try:
        raw = _PolicyFile.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"payer_policies.toml: {exc}") from exc
    except ValidationError as exc:
        raise PolicyError(f"payer_policies.toml: {describe_errors(exc.errors())}") from exc
    return PayerPolicies(raw.kind, raw.payer, raw.assistant_modifiers)


def load_policies() -> PayerPolicies:
    text = resources.files("compliance.data").joinpath("payer_policies.toml").read_text("utf-8")
    return parse_policies(text)
