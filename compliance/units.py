"""Unit rules for timed (15-minute) codes. Pure functions.

CMS 8-minute rule: CMS Pub. 100-04 (Medicare Claims Processing Manual), Ch. 5, sec. 20.2.
AMA/CPT midpoint rule: CPT time rule, "a unit of time is attained when the mid-point is passed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from math import comb

#: An allocation of timed units: CPT code -> units.
Allocation = dict[str, int]


def units_for_minutes(minutes: int) -> int:
    """15-minute units for a number of minutes: 8-22 -> 1, 23-37 -> 2, 38-52 -> 3 ...

    CMS Pub. 100-04, Ch. 5, sec. 20.2 (the chart); also the CPT midpoint for a single code.
    """
    if minutes < 0:
        raise ValueError("minutes must be >= 0")
    full, rest = divmod(minutes, 15)
    return full + (1 if rest >= 8 else 0)


def cms_total_units(total_timed_minutes: int) -> int:
    """Units the pooled timed minutes of a visit support (CMS Pub. 100-04, Ch. 5, sec. 20.2)."""
    return units_for_minutes(total_timed_minutes)


@dataclass(frozen=True, slots=True)
class CmsSplit:
    """How CMS Pub. 100-04, Ch. 5, sec. 20.2 splits pooled timed units across codes.

    Minutes of all timed codes are pooled to fix the total; each code keeps its full 15-minute
    units; the remaining units go one each to the codes with the most leftover minutes; where
    leftovers tie, any of the tied codes may take the unit (examples 2 and 5).
    `sure` codes get one extra unit; `picks` of the `tied` codes get one, in any combination.
    """

    full: Mapping[str, int]
    sure: frozenset[str]
    tied: tuple[str, ...]
    picks: int

    @property
    def total_units(self) -> int:
        return sum(self.full.values()) + len(self.sure) + self.picks

    def allows(self, billed: Mapping[str, int]) -> bool:
        """Whether `billed` (units by code; absent = 0) is one of the allowed allocations."""
        if any(c not in self.full and u != 0 for c, u in billed.items()):
            return False
        chosen = 0
        for code, full in self.full.items():
            extra = billed.get(code, 0) - full
            if code in self.sure:
                if extra != 1:
                    return False
            elif extra == 1 and code in self.tied:
                chosen += 1
            elif extra != 0:
                return False
        return chosen == self.picks

    def max_units(self) -> dict[str, int]:
        """The most units any allowed allocation gives each code."""
        return {
            c: f + (1 if c in self.sure or (c in self.tied and self.picks > 0) else 0)
            for c, f in self.full.items()
        }

    def count(self) -> int:
        return comb(len(self.tied), self.picks)

    def allocations(self, limit: int | None = None) -> list[Allocation]:
        """Every allowed allocation (all codes present, 0 included), sorted; at most `limit`.

        The count grows combinatorially with ties (25 codes of 7 minutes each allow millions),
        so callers that publish the list pass a limit and report `count()` beside it."""
        out: list[Allocation] = []
        for picked in combinations(self.tied, self.picks):
            if limit is not None and len(out) >= limit:
                break
            alloc = dict(self.full)
            for c in (*self.sure, *picked):
                alloc[c] += 1
            out.append(dict(sorted(alloc.items())))
        return out


def cms_split(minutes_by_code: Mapping[str, int]) -> CmsSplit:
    """The CMS split of pooled timed minutes (CMS Pub. 100-04, Ch. 5, sec. 20.2)."""
    if any(m < 0 for m in minutes_by_code.values()):
        raise ValueError("minutes must be >= 0")
    codes = sorted(minutes_by_code)
    full = {c: minutes_by_code[c] // 15 for c in codes}
    left = {c: minutes_by_code[c] % 15 for c in codes}
    extra = cms_total_units(sum(minutes_by_code.values())) - sum(full.values())
    if extra == 0:
        return CmsSplit(full, frozenset(), (), 0)
    # extra <= number of codes with leftover minutes (each leftover is at most 14), so the
    # threshold is a positive leftover and no code gets more than one unit beyond its full ones.
    threshold = sorted(left.values(), reverse=True)[extra - 1]
    sure = frozenset(c for c in codes if left[c] > threshold)
    tied = tuple(c for c in codes if left[c] == threshold)
    return CmsSplit(full, sure, tied, extra - len(sure))


def cms_allocations(minutes_by_code: Mapping[str, int]) -> list[Allocation]:
    """Every allocation of units to codes that CMS Pub. 100-04, Ch. 5, sec. 20.2 allows."""
    return cms_split(minutes_by_code).allocations()


def service_units(minutes: int, first_unit: int = 15, next_unit: int = 15) -> int:
    """Units of one service under the CPT time rule ("a unit of time is attained when the
    mid-point is passed"), for codes whose first unit is `first_unit` minutes and each further
    unit `next_unit` minutes: 97550 "initial 30 minutes" + 97551 "each additional 15 minutes"
    gives 1 unit from 16 minutes and 2 from 38. With 15/15 it is `units_for_minutes`."""
    if minutes < 0:
        raise ValueError("minutes must be >= 0")
    if 2 * minutes <= first_unit:
        return 0
    full, rest = divmod(max(0, minutes - first_unit), next_unit)
    return 1 + full + (1 if 2 * rest > next_unit else 0)


def ama_units(minutes: int) -> int:
    """Units of one code under the CPT midpoint rule: each code on its own, never pooled, so
    7 minutes of each of two codes bill nothing."""
    return units_for_minutes(minutes)
