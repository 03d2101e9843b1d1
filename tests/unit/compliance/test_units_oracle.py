"""The CMS 8-minute split against an independent oracle (CMS Pub. 100-04, Ch. 5, sec. 20.2).

The oracle does not use compliance/units.py: it enumerates every allocation of the visit's
units to its codes (brute force) and accepts those the manual's words allow: the pooled total
from the chart (8-22 minutes = 1 unit, each further 15 = 1 more); "full 15-minute blocks stay
with their code"; the remaining units go one each to the codes with the most remaining
minutes. An add-on family (97129 + 97130) is one service (its minutes pooled), whose units go
1 to 97129 ("initial 15 minutes") and the rest to 97130 ("each additional 15 minutes"). The
engine must flag exactly the allocations the oracle rejects.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from compliance import Engine
from tests.factories import model, timed_visit
from tests.unit.conftest import rule_ids

FAMILY = ("97129", "97130")
ENGINE = Engine()


def chart_units(total: int) -> int:
    """The sec. 20.2 chart: fewer than 8 minutes none; 8-22 one; 23-37 two; ..."""
    return 0 if total < 8 else 1 + (total - 8) // 15


def oracle_accepts(minutes: dict[str, int], units: dict[str, int]) -> bool:
    services: dict[str, int] = {}
    billed: dict[str, int] = {}
    for code, m in minutes.items():
        key = "family" if code in FAMILY else code
        services[key] = services.get(key, 0) + m
        billed[key] = billed.get(key, 0) + units[code]
    if sum(billed.values()) != chart_units(sum(services.values())):
        return False
    extra = {}
    for s, m in services.items():
        full, rest = m // 15, m % 15
        if billed[s] < full or billed[s] > full + 1:
            return False
        if billed[s] == full + 1 and rest == 0:
            return False
        extra[s] = billed[s] - full
    rest_of = {s: m % 15 for s, m in services.items()}
    for s, t in product(services, services):
        if extra[s] == 1 and extra[t] == 0 and rest_of[s] < rest_of[t]:
            return False
    if "family" in services:  # within the family: 97129 takes 1 (if any), 97130 the rest
        f = billed["family"]
        if units.get("97129", 0) != min(f, 1):
            return False
    return True


def allocations(codes: list[str], total: int) -> Iterator[dict[str, int]]:
    for combo in product(range(total + 1), repeat=len(codes)):
        if sum(combo) == total:
            yield dict(zip(codes, combo, strict=True))


visits = st.dictionaries(
    st.sampled_from(["97110", "97112", "97140", "97530", "97035"]),
    st.integers(0, 30),
    min_size=1,
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(visits, st.none() | st.tuples(st.integers(0, 30), st.integers(0, 30)))
def test_property_engine_flags_exactly_what_the_manual_disallows(
    minutes: dict[str, int], family: tuple[int, int] | None
) -> None:
    minutes = dict(minutes)
    if family is not None:
        minutes["97129"], minutes["97130"] = family
    codes = sorted(minutes)
    total = chart_units(sum(minutes.values()))
    for alloc in allocations(codes, total):
        data = timed_visit(*[(c, alloc[c], minutes[c]) for c in codes])
        found = rule_ids(ENGINE.check(model(data)))
        if oracle_accepts(minutes, alloc):
            assert found == [], (minutes, alloc, found)
        else:
            assert found and set(found) <= {
                "TIMED_UNITS_MISALLOCATED",
                "ADD_ON_CODE_WITHOUT_PRIMARY",
            }, (minutes, alloc, found)


def test_oracle_reproduces_the_manuals_worked_examples() -> None:
    # The oracle itself against sec. 20.2's examples (so it is not vacuous).
    assert oracle_accepts({"97112": 24, "97110": 23}, {"97112": 2, "97110": 1})
    assert not oracle_accepts({"97112": 24, "97110": 23}, {"97112": 1, "97110": 2})
    assert oracle_accepts({"97112": 20, "97110": 20}, {"97112": 1, "97110": 2})
    assert oracle_accepts({"97112": 20, "97110": 20}, {"97112": 2, "97110": 1})
    assert not oracle_accepts({"97112": 20, "97110": 20}, {"97112": 3, "97110": 0})
    assert oracle_accepts({"97110": 33, "97140": 7}, {"97110": 2, "97140": 1})
    assert not oracle_accepts({"97110": 33, "97140": 7}, {"97110": 3, "97140": 0})
    ex4 = {"97110": 18, "97140": 13, "97116": 10, "97035": 8}
    assert oracle_accepts(ex4, {"97110": 1, "97140": 1, "97116": 1, "97035": 0})
    assert not oracle_accepts(ex4, {"97110": 1, "97140": 1, "97116": 0, "97035": 1})
    three = {"97112": 7, "97110": 7, "97140": 7}
    assert sum(oracle_accepts(three, a) for a in allocations(sorted(three), 1)) == 3
    assert oracle_accepts({"97129": 14, "97130": 26}, {"97129": 1, "97130": 2})
    assert not oracle_accepts({"97129": 14, "97130": 26}, {"97129": 3, "97130": 0})
