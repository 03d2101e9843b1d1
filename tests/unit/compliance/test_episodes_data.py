"""Episode rule data, validated at load: KX thresholds (kx_thresholds.toml), the episode policy
(episode_policy.toml), the catalog's evaluation kinds and the payer policy flags. Amounts and
sources: ../shared/design/ehr_ncci.md sec. 6 (CMS Therapy Services page for 2026, CR 14252;
MAC articles for 2022-2024; secondary sources only for 2025)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from compliance.catalog import EvaluationKind, load_catalog, parse_catalog
from compliance.episode_policy import EpisodePolicyError, parse_episode_policy
from compliance.kx_thresholds import KxBucket, KxThresholdError, parse_kx_thresholds
from compliance.policy import load_policies
from compliance.ruleset import default_ruleset, load_ruleset
from tests.factories import model, payload

DATA = Path(__file__).parents[3] / "compliance" / "data"


def test_shipped_kx_thresholds_per_year_and_bucket() -> None:
    kx = default_ruleset().kx
    expected = {2022: 215_000, 2023: 223_000, 2024: 233_000, 2025: 241_000, 2026: 248_000}
    for year, cents in expected.items():
        assert kx.cents(year, KxBucket.PT_SLP) == cents
        assert kx.cents(year, KxBucket.OT) == cents
    assert kx.cents(2021, KxBucket.OT) is None and kx.cents(2027, KxBucket.PT_SLP) is None
    assert kx.premature_share_percent == 90
    assert "CR 14252" in kx.source(2026) and "[evidence: cms]" in kx.source(2026)
    assert "SECONDARY" in kx.source(2025) and "[evidence: secondary]" in kx.source(2025)


def test_kx_threshold_file_is_validated() -> None:
    text = (DATA / "kx_thresholds.toml").read_text()
    with pytest.raises(KxThresholdError, match="year 2026 appears twice"):
        parse_kx_thresholds(text + text[text.index("[[threshold]]\nyear = 2026") :])
    with pytest.raises(KxThresholdError, match="pt_slp"):
        parse_kx_thresholds(text.replace('pt_slp = "2480.00"', 'pt_slp = "2,480"'))
    with pytest.raises(KxThresholdError, match="must be > 0"):
        parse_kx_thresholds(text.replace('ot = "2480.00"', 'ot = "0"'))
    with pytest.raises(KxThresholdError, match="evidence"):
        parse_kx_thresholds(text.replace('evidence = "cms"', 'evidence = "blog"'))
    with pytest.raises(KxThresholdError, match="share_percent"):
        parse_kx_thresholds(text.replace("share_percent = 90", "share_percent = 0"))


def test_episode_policy_is_validated() -> None:
    text = (DATA / "episode_policy.toml").read_text()
    policy = parse_episode_policy(text)
    assert policy.progress_report.max_treatment_days == 10
    assert policy.certification.within_days == 30 and policy.certification.verbal_order_days == 14
    assert policy.recertification.max_interval_days == 90
    assert policy.referral_exception.effective_from == date(2025, 1, 1)
    assert {c.value for c in policy.progress_report.assistants} == {"PTA", "OTA", "SLPA"}
    with pytest.raises(EpisodePolicyError, match="listed as clinician and assistant"):
        parse_episode_policy(text.replace('assistants = ["PTA"', 'assistants = ["PT", "PTA"'))
    with pytest.raises(EpisodePolicyError, match="max_treatment_days"):
        parse_episode_policy(text.replace("max_treatment_days = 10", "max_treatment_days = 0"))
    with pytest.raises(EpisodePolicyError, match="clinicians"):
        parse_episode_policy(text.replace('"NP", "PA"]', '"NP", "DR"]'))


def test_a_rule_set_directory_can_override_the_episode_data(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    text = (DATA / "kx_thresholds.toml").read_text()
    (d / "kx_thresholds.toml").write_text(
        text
        + '\n[[threshold]]\nyear = 2027\npt_slp = "2550.00"\not = "2550.00"\nevidence = "cms"\nsource = "CMS CY 2027 update (test)"\n'
    )
    rs = load_ruleset(d)
    assert rs.kx.cents(2027, KxBucket.OT) == 255_000
    assert rs.version != default_ruleset().version


def test_catalog_tells_initial_evaluations_from_re_evaluations() -> None:
    catalog = load_catalog()
    initial = {"97161", "97162", "97163", "97165", "97166", "97167", "92521", "92522", "92523"}
    for code in initial | {"92524", "92610"}:
        assert catalog.get(code).evaluation_kind is EvaluationKind.INITIAL, code  # type: ignore[union-attr]
    for code in ("97164", "97168", "97002", "97004"):
        assert catalog.get(code).evaluation_kind is EvaluationKind.RE, code  # type: ignore[union-attr]
    for code in catalog.codes():
        entry = catalog.get(code)
        assert entry is not None
        assert (entry.evaluates is None) == (entry.evaluation_kind is None), code
    header = (
        "code,descriptor,unit_basis,unit_minutes,add_on_to,max_units_per_day,evaluates,"
        "evaluation_kind,written_report,always_therapy,effective_from,effective_to,"
        "replaced_by,source\n"
    )
    with pytest.raises(ValueError, match="evaluation_kind is only for evaluation codes"):
        parse_catalog(header + "97110,Exercise,timed,15,,,,initial,false,true,,,,CPT\n")


@pytest.mark.parametrize(
    ("kind", "kx", "medicare_rules"),
    [
        ("medicare", True, True),
        ("medicare_advantage", False, True),
        ("medicaid", False, False),
        ("commercial", False, False),
        ("workers_comp", False, False),
        ("other", False, False),
    ],
)
def test_payer_policy_scopes_kx_to_part_b_and_the_plan_rule_to_everyone(
    kind: str, kx: bool, medicare_rules: bool
) -> None:
    resolved = load_policies().resolve(model(payload(payer={"payer_id": "X", "kind": kind})))
    assert resolved.kx_threshold is kx
    assert resolved.follows_medicare is medicare_rules
    assert resolved.plan_of_care_required is True
