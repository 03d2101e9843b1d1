"""Per-visit facts every rule needs, computed once: catalog entry per line, the payer policy."""

from __future__ import annotations

from dataclasses import dataclass

from compliance.catalog import Catalog, CodeEntry, UnitBasis
from compliance.policy import ResolvedPolicy
from schemas.visit import ServiceLine, TherapyVisitCompleted


@dataclass(frozen=True, slots=True)
class Line:
    line: ServiceLine
    entry: CodeEntry | None  # None: not in the catalog
    id: str
    billed: bool  # units > 0 (plain fields: rules read them in tight loops)

    @classmethod
    def of(cls, line: ServiceLine, catalog: Catalog) -> Line:
        return cls(line, catalog.get(line.cpt), line.line_id, line.units > 0)


@dataclass(frozen=True, slots=True)
class VisitContext:
    visit: TherapyVisitCompleted
    catalog: Catalog
    policy: ResolvedPolicy
    lines: tuple[Line, ...]
    timed: tuple[Line, ...]
    unknown: tuple[Line, ...]

    @classmethod
    def build(
        cls, visit: TherapyVisitCompleted, catalog: Catalog, policy: ResolvedPolicy
    ) -> VisitContext:
        lines = tuple([Line.of(s, catalog) for s in visit.services])
        timed = tuple(
            ln for ln in lines if ln.entry is not None and ln.entry.unit_basis is UnitBasis.TIMED
        )
        unknown = tuple(ln for ln in lines if ln.entry is None)
        return cls(visit, catalog, policy, lines, timed, unknown)

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


def ids(lines: tuple[Line, ...] | list[Line]) -> tuple[str, ...]:
    return tuple(sorted(ln.id for ln in lines))
