"""Per-visit facts every rule needs, computed once: catalog entry per line, the payer policy,
the rule set, the patient's earlier visits of the same date of service, and where the visit
stands in its episode of care and KX accrual (with a patient history)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from compliance.catalog import Catalog, CodeEntry, Family, UnitBasis
from compliance.episodes.judge import EpisodeJudgement
from compliance.policy import ResolvedPolicy
from compliance.records import VisitRecord
from compliance.ruleset import RuleSet
from schemas.visit import ServiceLine, TherapyVisitCompleted

THERAPY_MODIFIERS = frozenset({"GP", "GO", "GN"})


# The per-visit records below are msgspec Structs, not frozen dataclasses: built for every
# line of every judged visit, and a frozen dataclass's __init__ (object.__setattr__ per field)
# costs ~10x a Struct's.


class Line(msgspec.Struct, frozen=True):
    line: ServiceLine
    entry: CodeEntry | None  # None: not in the catalog
    id: str
    billed: bool  # units > 0 (plain fields: rules read them in tight loops)
    family: Family | None
    #: The unit rules' service: the family's primary code, else the code itself.
    service: str
    #: A 15-minute timed code (or family): pooled under the CMS 8-minute rule, which covers
    #: 15-minute timed codes only (CMS Pub. 100-04, Ch. 5, sec. 20.2).
    pooled: bool

    @classmethod
    def of(cls, line: ServiceLine, catalog: Catalog) -> Line:
        entry, family, service, pooled = catalog.line_facts(line.cpt)
        return cls(line, entry, line.line_id, line.units > 0, family, service, pooled)


class VisitContext(msgspec.Struct, frozen=True):
    visit: TherapyVisitCompleted
    catalog: Catalog
    policy: ResolvedPolicy
    rules: RuleSet
    lines: tuple[Line, ...]
    timed: tuple[Line, ...]
    unknown: tuple[Line, ...]
    #: The patient's other visits of this date of service seen before this one (any NPI).
    same_day: tuple[VisitRecord, ...] = ()
    #: The visit's episode and KX accrual (None: evaluated without a patient history).
    episode: EpisodeJudgement | None = None
    #: The patient's other visits of this date placed after this one (first seen later): only
    #: rules whose finding has no single carrier read them (an add-on's primary may be billed
    #: in a later visit of the day).
    same_day_after: tuple[VisitRecord, ...] = ()

    @classmethod
    def build(
        cls,
        visit: TherapyVisitCompleted,
        rules: RuleSet,
        policy: ResolvedPolicy,
        same_day: tuple[VisitRecord, ...] = (),
        same_day_after: tuple[VisitRecord, ...] = (),
    ) -> VisitContext:
        catalog = rules.catalog
        lines = tuple([Line.of(s, catalog) for s in visit.services])
        timed = tuple(
            ln for ln in lines if ln.entry is not None and ln.entry.unit_basis is UnitBasis.TIMED
        )
        unknown = tuple(ln for ln in lines if ln.entry is None)
        return cls(
            visit, catalog, policy, rules, lines, timed, unknown, same_day, None, same_day_after
        )

    def with_episode(self, episode: EpisodeJudgement) -> VisitContext:
        return msgspec.structs.replace(self, episode=episode)

    @property
    def billed(self) -> tuple[Line, ...]:
        return tuple(ln for ln in self.lines if ln.billed)

    def therapy_lines(self) -> list[Line]:
        """Billed lines of therapy services (KX accrual): codes the catalog marks "always
        therapy", and any line billed with a therapy modifier (GP/GO/GN: furnished under a
        therapy plan of care, CMS Pub. 100-04, Ch. 5, sec. 20.1)."""
        return [
            ln
            for ln in self.lines
            if ln.billed
            and (
                (ln.entry is not None and ln.entry.always_therapy)
                or not THERAPY_MODIFIERS.isdisjoint(ln.line.modifiers)
            )
        ]

    @property
    def same_npi(self) -> tuple[VisitRecord, ...]:
        """Earlier visits of this date of service by the same rendering NPI."""
        npi = self.visit.rendering_provider.npi
        return tuple(v for v in self.same_day if v.npi == npi)

    @property
    def all_timed_minutes_known(self) -> bool:
        return all(ln.line.minutes is not None for ln in self.timed)

    def sum_timed_line_minutes(self) -> int:
        return sum(ln.line.minutes or 0 for ln in self.timed)

    def pooled_timed_minutes(self) -> tuple[int, str] | None:
        """The timed minutes Medicare audits, and where they came from: the documented total,
        else the sum of the lines' minutes when every timed line has them (EVENTS.md)."""
        total = self.visit.total_timed_minutes
        if total is not None:
            return total, "total_timed_minutes"
        if self.timed and self.all_timed_minutes_known:
            return self.sum_timed_line_minutes(), "sum_of_line_minutes"
        return None

    # --- amounts (docs/rules.md "Revenue at risk") ----------------------------------------

    def line_amount(self, ln: Line) -> Decimal | None:
        """The line's amount: its `allowed_amount`, else the fee schedule's per-unit amount
        times its units, else None (unknown)."""
        if ln.line.allowed_amount is not None:
            return Decimal(ln.line.allowed_amount)
        fee = self.rules.fees.per_unit(
            ln.line.cpt, self.visit.date_of_service.year, self.visit.payer.payer_id
        )
        return None if fee is None else fee * ln.line.units

    def units_amount(self, ln: Line, units: int) -> Decimal | None:
        """The share of the line's amount for `units` of its units."""
        amount = self.line_amount(ln)
        if amount is None or ln.line.units <= 0:
            return None
        return amount * min(units, ln.line.units) / ln.line.units

    def lines_amount(self, lines: tuple[Line, ...] | list[Line]) -> Decimal | None:
        total = Decimal(0)
        for ln in lines:
            amount = self.line_amount(ln)
            if amount is None:
                return None
            total += amount
        return total


def ids(lines: tuple[Line, ...] | list[Line]) -> tuple[str, ...]:
    return tuple(sorted(ln.id for ln in lines))
