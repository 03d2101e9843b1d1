"""`Catalog.line_facts` (memoised per catalog code, issue 13) against the shipped catalog's
rows read by hand (compliance/data/cpt_catalog.csv and the CPT descriptors it cites)."""

from __future__ import annotations

from compliance.ruleset import default_ruleset


def test_facts_of_known_codes() -> None:
    catalog = default_ruleset().catalog
    cases = {
        # code: (timed family primary or None, service, pooled under the CMS 8-minute rule)
        "97110": (None, "97110", True),  # timed, 15-minute unit
        "97035": (None, "97035", True),
        "97129": ("97129", "97129", True),  # family 97129 + 97130, both 15 minutes
        "97130": ("97129", "97129", True),
        "97550": ("97550", "97550", False),  # "initial 30 min" + 97551 "each additional 15"
        "97551": ("97550", "97550", False),
        "97161": (None, "97161", False),  # an untimed evaluation
    }
    for code, (primary, service, pooled) in cases.items():
        for _ in range(2):  # computed, then from the memo
            facts = catalog.line_facts(code)
            assert facts.entry is not None and facts.entry.code == code
            assert (facts.family.primary if facts.family else None) == primary, code
            assert (facts.service, facts.pooled) == (service, pooled), code


def test_unknown_codes_are_not_memoised() -> None:
    catalog = default_ruleset().catalog
    before = len(catalog._line_facts)
    for i in range(500):
        facts = catalog.line_facts(f"Z{i:04d}")
        assert facts == (None, None, f"Z{i:04d}", False)
    assert len(catalog._line_facts) == before
