"""The CPT catalog and payer policy data files, validated at load."""

from __future__ import annotations

from datetime import date

import pytest

from compliance.catalog import CatalogError, UnitBasis, load_catalog, parse_catalog
from compliance.policy import PolicyError, load_policies, parse_policies
from schemas.common import UnitRule
from tests.factories import model, payload

HEADER = (
    "code,descriptor,unit_basis,unit_minutes,add_on_to,max_units_per_day,evaluates,"
    "written_report,always_therapy,effective_from,effective_to,replaced_by,source\n"
)
SEED = [
    "97001",
    "97002",
    "97003",
    "97004",
    "97112",
    "97530",
    "97535",
    "97537",
    "97542",
    "97750",
    "97755",
    "97760",
    "97762",
]
BESIDE = [
    *(f"971{n}" for n in range(61, 73)),
    "97763",
    "97761",
    "97110",
    "97116",
    "97140",
    "97150",
    "97010",
    "97012",
    "97014",
    "97016",
    "97018",
    "97022",
    "97024",
    "97026",
    "97028",
    "97032",
    "97033",
    "97034",
    "97035",
    "97036",
    "97039",
    "97129",
    "97130",
    "97533",
]


def test_catalog_has_every_seed_code_and_the_codes_billed_beside_them() -> None:
    catalog = load_catalog()
    missing = [c for c in SEED + BESIDE if c not in catalog]
    assert missing == []


@pytest.mark.parametrize(
    "code",
    [
        "97110",
        "97112",
        "97116",
        "97140",
        "97530",
        "97533",
        "97535",
        "97537",
        "97542",
        "97750",
        "97755",
        "97760",
        "97761",
        "97762",
        "97763",
        "97032",
        "97033",
        "97034",
        "97035",
        "97036",
    ],
)
def test_timed_codes(code: str) -> None:
    entry = load_catalog().get(code)
    assert entry is not None and entry.unit_basis is UnitBasis.TIMED


@pytest.mark.parametrize(
    "code",
    [
        "97010",
        "97012",
        "97014",
        "97016",
        "97018",
        "97022",
        "97024",
        "97026",
        "97028",
        "97150",
        "97001",
        "97002",
        "97003",
        "97004",
        *(f"971{n}" for n in range(61, 73)),
    ],
)
def test_untimed_codes(code: str) -> None:
    entry = load_catalog().get(code)
    assert entry is not None and entry.unit_basis is UnitBasis.SERVICE


def test_written_report_codes_are_exactly_97750_and_97755() -> None:
    catalog = load_catalog()
    flagged = [c for c in catalog.codes() if catalog.get(c).written_report]  # type: ignore[union-attr]
    assert flagged == ["97750", "97755"]


def test_every_row_cites_a_source_and_deleted_codes_name_replacements() -> None:
    catalog = load_catalog()
    for code in catalog.codes():
        entry = catalog.get(code)
        assert entry is not None and len(entry.source) > 5
    e = catalog.get("97762")
    assert e is not None and e.effective_to == date(2017, 12, 31) and e.replaced_by == ("97763",)


def test_catalog_rejects_duplicates() -> None:
    row = "97110,Therapeutic exercise,timed,15,,,,false,true,,,,CPT\n"
    with pytest.raises(CatalogError, match="duplicate code 97110"):
        parse_catalog(HEADER + row + row)


def test_catalog_rejects_unordered_dates() -> None:
    row = "97110,Therapeutic exercise,timed,15,,,,false,true,2020-01-01,2019-01-01,,CPT\n"
    with pytest.raises(CatalogError, match=r"line 2.*effective_to 2019-01-01 is before"):
        parse_catalog(HEADER + row)


def test_catalog_rejects_unknown_replacement_and_bad_values() -> None:
    with pytest.raises(CatalogError, match="replaced_by 97999 is not in the catalog"):
        parse_catalog(HEADER + "97001,PT eval,service,,,,PT,false,true,,2016-12-31,97999,CPT\n")
    with pytest.raises(CatalogError, match="unit_basis"):
        parse_catalog(HEADER + "97110,Exercise,sometimes,15,,,,false,true,,,,CPT\n")
    with pytest.raises(CatalogError, match="replaced_by given but no effective_to"):
        parse_catalog(
            HEADER + "97110,Exercise,timed,15,,,,false,true,,,97112,CPT\n"
            "97112,Neuro re-ed,timed,15,,,,false,true,,,,CPT\n"
        )


@pytest.mark.parametrize(
    ("kind", "rule", "modifiers"),
    [
        ("medicare", UnitRule.CMS_8_MINUTE, True),
        ("medicare_advantage", UnitRule.CMS_8_MINUTE, True),
        ("medicaid", UnitRule.CMS_8_MINUTE, False),
        ("commercial", UnitRule.AMA_MIDPOINT, False),
        ("workers_comp", UnitRule.AMA_MIDPOINT, False),
        ("other", UnitRule.AMA_MIDPOINT, False),
    ],
)
def test_contract_default_unit_rule_per_payer_kind(
    kind: str, rule: UnitRule, modifiers: bool
) -> None:
    resolved = load_policies().resolve(model(payload(payer={"payer_id": "X", "kind": kind})))
    assert resolved.unit_rule is rule
    assert resolved.therapy_modifiers_required is modifiers
    assert resolved.unit_rule_origin == "kind"


POLICY = """
[assistant_modifiers]
effective_from = 2020-01-01
de_minimis_percent = 10
source = "test"

[[kind]]
kind = "medicare"
unit_rule = "cms_8_minute"
therapy_modifiers_required = true
follows_medicare = true
source = "test"
""" + "".join(
    f"""
[[kind]]
kind = "{k}"
unit_rule = "ama_midpoint"
therapy_modifiers_required = false
follows_medicare = false
source = "test"
"""
    for k in ["medicare_advantage", "medicaid", "commercial", "workers_comp", "other"]
)


def test_payer_override_by_date_of_service_and_event_override() -> None:
    policies = parse_policies(
        POLICY
        + """
[[payer]]
payer_id = "ACME"
unit_rule = "cms_8_minute"
therapy_modifiers_required = true
follows_medicare = false
effective_from = 2026-01-01
source = "ACME provider manual"
"""
    )
    before = model(
        payload(
            date_of_service="2025-12-31",
            occurred_at="2025-12-31T12:00:00Z",
            payer={"payer_id": "ACME", "kind": "commercial"},
        )
    )
    after = model(payload(payer={"payer_id": "ACME", "kind": "commercial"}))
    assert policies.resolve(before).unit_rule is UnitRule.AMA_MIDPOINT
    r = policies.resolve(after)
    assert (r.unit_rule, r.therapy_modifiers_required, r.unit_rule_origin) == (
        UnitRule.CMS_8_MINUTE,
        True,
        "payer",
    )
    evt = model(
        payload(payer={"payer_id": "ACME", "kind": "commercial", "unit_rule": "ama_midpoint"})
    )
    r = policies.resolve(evt)
    assert (r.unit_rule, r.therapy_modifiers_required, r.unit_rule_origin) == (
        UnitRule.AMA_MIDPOINT,
        True,
        "event",
    )


def test_policy_file_must_cover_every_kind_and_date() -> None:
    with pytest.raises(PolicyError, match="no \\[\\[kind\\]\\] policy for payer kinds: medicare"):
        parse_policies(
            POLICY.split('\n[[kind]]\nkind = "medicare_advantage"')[0].replace(
                'kind = "medicare"', 'kind = "other"'
            )
        )
    with pytest.raises(PolicyError, match="cover every date"):
        parse_policies(
            POLICY.replace(
                'follows_medicare = true\nsource = "test"\n',
                'follows_medicare = true\nsource = "test"\neffective_from = 2020-01-01\n',
            )
        )
    with pytest.raises(PolicyError, match="unit_rule"):
        parse_policies(POLICY.replace("cms_8_minute", "eight_minutes"))
