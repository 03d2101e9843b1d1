"""Unit rules. Every worked example of CMS Pub. 100-04, Ch. 5, sec. 20.2 is a test named after it,
asserting the exact units CMS gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.units import (
    ama_units,
    cms_allocations,
    cms_split,
    cms_total_units,
    units_for_minutes,
)


# CMS Pub. 100-04, Ch. 5, sec. 20.2, the chart of units by total timed minutes.
@pytest.mark.parametrize(
    ("low", "high", "units"),
    [
        (0, 7, 0),
        (8, 22, 1),
        (23, 37, 2),
        (38, 52, 3),
        (53, 67, 4),
        (68, 82, 5),
        (83, 97, 6),
        (98, 112, 7),
        (113, 127, 8),
        (128, 142, 9),
    ],
)
def test_cms_sec_20_2_chart_boundaries(low: int, high: int, units: int) -> None:
    assert cms_total_units(low) == units
    assert cms_total_units(high) == units
    assert cms_total_units(high + 1) == units + 1


def test_negative_minutes_rejected() -> None:
    with pytest.raises(ValueError):
        units_for_minutes(-1)
    with pytest.raises(ValueError):
        cms_split({"97110": -5})


def test_cms_sec_20_2_example_1_47_minutes_3_units() -> None:
    # 24 min 97112 + 23 min 97110 = 47 -> 3 units: 97112 x2, 97110 x1.
    assert cms_allocations({"97112": 24, "97110": 23}) == [{"97110": 1, "97112": 2}]


def test_cms_sec_20_2_example_2_tie_either_code_gets_two() -> None:
    # 20 min 97112 + 20 min 97110 = 40 -> 3 units: either code x2, never 3 on one code.
    allowed = cms_allocations({"97112": 20, "97110": 20})
    assert sorted(map(sorted, (a.items() for a in allowed))) == sorted(
        [sorted({"97110": 2, "97112": 1}.items()), sorted({"97110": 1, "97112": 2}.items())]
    )
    split = cms_split({"97112": 20, "97110": 20})
    assert not split.allows({"97112": 3, "97110": 0})
    assert not split.allows({"97110": 3})


def test_cms_sec_20_2_example_3_leftover_goes_to_7_minute_code() -> None:
    # 33 min 97110 + 7 min 97140 = 40 -> 3 units: 97110 x2, 97140 x1.
    assert cms_allocations({"97110": 33, "97140": 7}) == [{"97110": 2, "97140": 1}]
    assert not cms_split({"97110": 33, "97140": 7}).allows({"97110": 3, "97140": 0})


def test_cms_sec_20_2_example_4_ultrasound_documented_not_billed() -> None:
    # 18 97110 + 13 97140 + 10 97116 + 8 97035 = 49 -> 3 units, one each of 97110/97140/97116.
    assert cms_allocations({"97110": 18, "97140": 13, "97116": 10, "97035": 8}) == [
        {"97035": 0, "97110": 1, "97116": 1, "97140": 1}
    ]


def test_cms_sec_20_2_example_5_three_7_minute_services_one_unit_any() -> None:
    # 7 + 7 + 7 = 21 -> 1 unit, to any one of the three.
    allowed = cms_allocations({"97112": 7, "97110": 7, "97140": 7})
    assert len(allowed) == 3
    assert all(sum(a.values()) == 1 for a in allowed)
    assert {next(c for c, u in a.items() if u) for a in allowed} == {"97112", "97110", "97140"}


def test_cms_sec_20_2_single_code_60_minutes_4_units() -> None:
    assert cms_allocations({"97530": 60}) == [{"97530": 4}]


def test_cms_two_services_under_8_minutes_sum_under_8_bill_nothing() -> None:
    assert cms_allocations({"97110": 3, "97140": 4}) == [{"97110": 0, "97140": 0}]


def test_cms_zero_minute_code_never_gets_a_unit() -> None:
    assert cms_allocations({"97110": 38, "97140": 0}) == [{"97110": 3, "97140": 0}]


def test_cms_empty_visit() -> None:
    assert cms_allocations({}) == [{}]


def test_cms_allows_treats_absent_code_as_zero_and_rejects_foreign_codes() -> None:
    split = cms_split({"97110": 33, "97035": 3})
    assert split.allows({"97110": 2})
    assert not split.allows({"97110": 2, "97999": 1})


def test_cms_many_ties_counted_without_enumerating() -> None:
    split = cms_split({f"97{i:03d}": 7 for i in range(25)})  # 175 min -> 12 units, all tied
    assert split.total_units == 12
    assert split.count() == 5_200_300
    assert len(split.allocations(limit=20)) == 20


def test_ama_each_code_alone() -> None:
    # AMA/CPT midpoint: 7 + 7 minutes of two codes bill nothing (not pooled).
    assert ama_units(7) + ama_units(7) == 0
    assert ama_units(8) == 1
    assert ama_units(22) == 1
    assert ama_units(23) == 2


minutes_maps = st.dictionaries(
    st.sampled_from(["97110", "97112", "97116", "97140", "97530", "97535", "97035", "97750"]),
    st.integers(min_value=0, max_value=120),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(minutes_maps)
def test_property_cms_allocation_sums_to_total_units_and_one_extra_at_most(
    minutes: dict[str, int],
) -> None:
    # CMS Pub. 100-04, Ch. 5, sec. 20.2: the pooled total decides the units; full 15-minute
    # blocks stay with their code; no code gets more than one unit beyond its full units.
    total = cms_total_units(sum(minutes.values()))
    split = cms_split(minutes)
    allocations = split.allocations()
    assert allocations, "there is always at least one allowed allocation"
    assert len(allocations) == split.count()
    for alloc in allocations:
        assert sum(alloc.values()) == total
        assert set(alloc) == set(minutes)
        for code, units in alloc.items():
            full = minutes[code] // 15
            assert full <= units <= full + 1
            if units > full:  # an extra unit only for real leftover minutes
                assert minutes[code] % 15 > 0
        assert split.allows(alloc)


@settings(max_examples=300, deadline=None)
@given(
    minutes_maps,
    st.dictionaries(st.sampled_from(["97110", "97140", "97530"]), st.integers(0, 10), max_size=3),
)
def test_property_allows_matches_enumeration(
    minutes: dict[str, int], billed: dict[str, int]
) -> None:
    allowed = cms_split(minutes).allocations()
    normal = {c: u for c, u in billed.items() if u}
    expected = any({c: u for c, u in a.items() if u} == normal for a in allowed)
    assert cms_split(minutes).allows(billed) == expected
