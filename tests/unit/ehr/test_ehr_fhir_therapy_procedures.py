"""Issue 20 item 3: only therapy procedures document a therapy visit.

A completed FHIR Procedure documents a visit's minutes (FHIR R4 Procedure.code, "the specific
procedure that is performed"); the visit is a therapy visit, so only the therapy codes of the
catalog (compliance/data/cpt_catalog.csv) or of the profile's [fhir] therapy_procedure_codes
count. Any other code (US Core's example 33249, "Insertion or replacement of permanent
implantable defibrillator system", a CPT surgery code) is a counted warning. The oracle: the same
conversion without that Procedure (it must change nothing but the warning), and the catalog file
read here with csv, apart from the code under test.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ehr import WarnReason, load_config, parse_fhir
from ehr.profile import DEFAULT_PROFILE_PATH
from tests.unit.ehr.fhirbuild import (
    MRN,
    NOW,
    claim,
    collection,
    convert,
    defibrillator_implant,
    people,
    procedure,
)

KEY = b"test-key-0123456789abcdef"
CONFIG = load_config(KEY)
CATALOG = Path(__file__).resolve().parents[3] / "compliance/data/cpt_catalog.csv"


def catalog_codes() -> set[str]:
    with CATALOG.open(encoding="utf-8") as fh:
        return {row["code"] for row in csv.DictReader(fh)}


def test_the_oracle_catalog_has_the_therapy_codes_and_not_33249() -> None:
    codes = catalog_codes()
    # CMS "therapy codes" the tests below use (CMS Pub. 100-04, Ch. 5, sec. 20): 97110
    # therapeutic exercise, 97140 manual therapy; 33249 is a cardiovascular surgery code.
    assert {"97110", "97140"} <= codes and "33249" not in codes
    assert CONFIG.therapy_codes == frozenset(codes)


def test_a_defibrillator_procedure_beside_a_pt_claim_is_not_documentation(tmp_path: Path) -> None:
    alone = collection([*people(), claim(("97110", 2))])
    with_implant = collection([*people(), claim(("97110", 2)), defibrillator_implant()])
    code_a, visits_a, err_a = convert(alone, CONFIG, tmp_path)
    code_b, visits_b, err_b = convert(with_implant, CONFIG, tmp_path)
    # Exactly the visit without it: charges only, "documentation not received".
    assert visits_b == visits_a
    [visit] = visits_b
    assert visit["parts_missing"] == ["documentation"]
    assert [(s["cpt"], s["units"]) for s in visit["services"]] == [("97110", 2)]
    # Counted and said, naming the code and the entry, never the patient.
    assert code_a == code_b == 0
    [warning] = [e for e in err_b if "warning" in e]
    assert warning["warning"] == WarnReason.NOT_THERAPY_PROCEDURE == "not_therapy_procedure"
    assert "33249" in warning["detail"] and "entry[6] Procedure" in warning["detail"]
    assert MRN not in warning["detail"] and "Doe" not in warning["detail"]
    assert err_b[-1]["summary"]["warnings"] == 1 and err_b[-1]["summary"]["rejected"] == 0
    assert err_a[-1]["summary"]["warnings"] == 0


def test_therapy_procedures_keep_their_minutes_beside_a_non_therapy_one(tmp_path: Path) -> None:
    bundle = collection(
        [
            *people(),
            claim(("97110", 2)),
            defibrillator_implant(),
            procedure("pc1", "97110", 33),
        ]
    )
    code, [visit], err = convert(bundle, CONFIG, tmp_path)
    assert code == 0 and "parts_missing" not in visit
    # 33 minutes: performedPeriod 09:05-09:38 (Procedure.performed[x]); no 33249 line, not even
    # the 0-unit line a documented but unbilled code gets.
    assert [(s["cpt"], s["units"], s.get("minutes")) for s in visit["services"]] == [
        ("97110", 2, 33)
    ]
    assert [e["warning"] for e in err if "warning" in e] == ["not_therapy_procedure"]


def test_the_procedure_part_ignores_a_non_therapy_first_member() -> None:
    # The part's author and date come from its first member: never from the non-therapy one.
    implant = procedure("defib-implant", "33249", None, performedDateTime="2026-02-01")
    implant["performer"] = [{"actor": {"reference": "Practitioner/other"}}]
    result = parse_fhir(collection([*people(), implant, procedure("pc1", "97140", 7)]), CONFIG, NOW)
    [part] = result.parts
    assert part.part == "documentation"
    assert part.minutes_by_cpt == {"97140": 7}
    assert str(part.date_of_service) == "2026-03-04" and part.author_npi == "1234567893"
    assert [w.reason for w in result.warnings] == [WarnReason.NOT_THERAPY_PROCEDURE]
    assert result.warnings[0].message_id == "Procedure/defib-implant"


def test_only_non_therapy_procedures_give_a_warning_and_no_rejection() -> None:
    result = parse_fhir(collection([*people(), defibrillator_implant()]), CONFIG, NOW)
    assert result.parts == () and result.rejections == ()
    assert [w.reason for w in result.warnings] == [WarnReason.NOT_THERAPY_PROCEDURE]


def test_the_profile_list_adds_a_local_therapy_code(tmp_path: Path) -> None:
    # 0552T (CPT Category III, low-level laser therapy): not in the catalog, so a warning by
    # default; listed in the profile's [fhir] therapy_procedure_codes, documentation.
    assert "0552T" not in catalog_codes()
    bundle = collection([*people(), procedure("pc9", "0552T", 12)])
    default = parse_fhir(bundle, CONFIG, NOW)
    assert default.parts == () and len(default.warnings) == 1
    text = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8").replace(
        "therapy_procedure_codes = []", 'therapy_procedure_codes = ["0552T"]'
    )
    assert 'therapy_procedure_codes = ["0552T"]' in text
    profile = tmp_path / "profile.toml"
    profile.write_text(text, encoding="utf-8")
    local = parse_fhir(bundle, load_config(KEY, profile), NOW)
    [part] = local.parts
    assert part.minutes_by_cpt == {"0552T": 12} and local.warnings == ()


def test_a_rule_sets_own_catalog_decides(tmp_path: Path) -> None:
    # TC_RULESET_DIR with its own catalog: the worker's and convert's EHR config use its codes.
    from runtime.settings import Settings

    rows = CATALOG.read_text(encoding="utf-8").splitlines()
    header, kept = rows[0], [r for r in rows[1:] if not r.startswith("97140,")]
    (tmp_path / "cpt_catalog.csv").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    settings = Settings.from_env(
        {"TC_EHR_PATIENT_KEY": KEY.decode(), "TC_RULESET_DIR": str(tmp_path)}
    )
    config = settings.ehr_config()
    assert config.therapy_codes == catalog_codes() - {"97140"}
    result = parse_fhir(collection([*people(), procedure("pc1", "97140", 7)]), config, NOW)
    assert result.parts == () and len(result.warnings) == 1
    shipped = Settings.from_env({"TC_EHR_PATIENT_KEY": KEY.decode()}).ehr_config()
    assert shipped.therapy_codes == catalog_codes()


def test_a_non_therapy_procedure_without_encounter_is_still_refused() -> None:
    # Unchanged (the R4 HCBS sample, T1019): a Procedure that names no visit is refused whatever
    # its code; the therapy question is asked of a Procedure placed on a visit.
    implant = defibrillator_implant()
    del implant["encounter"]
    result = parse_fhir(collection([*people()[:3], implant]), CONFIG, NOW)
    [rejection] = result.rejections
    assert rejection.reason == "missing_field" and result.warnings == ()


def _with_modifier(bundle_claim: dict[str, object], mod: str) -> dict[str, object]:
    items = bundle_claim["item"]
    assert isinstance(items, list)
    for item in items:
        item["modifier"] = [{"coding": [{"code": mod}]}]
    return bundle_claim


def test_a_code_billed_with_gp_on_the_visit_is_therapy_documentation(tmp_path: Path) -> None:
    # Pub. 100-04 Ch. 5 sec. 20.1: GP/GO/GN identify services delivered under a therapy plan of
    # care. 92609 (CMS "always therapy", speech-generating device services) and 97597 (CMS
    # "sometimes therapy", debridement) are not in the shipped catalog; billed with GP on the
    # same encounter in the same bundle, a completed Procedure with that code documents them.
    for code in ("92609", "97597"):
        assert code not in catalog_codes()
        bundle = collection([*people(), claim((code, 1)), procedure("pc1", code, 30)])
        rc, [visit], err = convert(bundle, CONFIG, tmp_path)
        assert rc == 0 and "parts_missing" not in visit, code
        # 30 minutes: performedPeriod 09:05-09:35.
        assert [(s["cpt"], s["units"], s.get("minutes")) for s in visit["services"]] == [
            (code, 1, 30)
        ]
        assert [e for e in err if "warning" in e] == []


def test_a_code_billed_without_a_therapy_modifier_or_on_another_visit_is_not() -> None:
    # 59 (distinct procedural service) is no therapy modifier: still not documentation.
    plain = _with_modifier(claim(("97597", 1)), "59")
    result = parse_fhir(collection([*people(), plain, procedure("pc1", "97597", 30)]), CONFIG, NOW)
    assert [w.reason for w in result.warnings] == [WarnReason.NOT_THERAPY_PROCEDURE]
    assert "97597" in result.warnings[0].detail
    # GP on another encounter (e2) does not make e1's Procedure therapy.
    other = claim(("97597", 1))
    other["item"][0]["encounter"] = [{"reference": "Encounter/e2"}]
    result = parse_fhir(collection([*people(), other, procedure("pc1", "97597", 30)]), CONFIG, NOW)
    assert WarnReason.NOT_THERAPY_PROCEDURE in [w.reason for w in result.warnings]
    assert not [p for p in result.parts if p.part == "documentation"]
    # Alone (the charges in another bundle): the catalog or the profile's list must know it.
    alone = parse_fhir(collection([*people(), procedure("pc1", "92609", 30)]), CONFIG, NOW)
    assert alone.parts == () and [w.reason for w in alone.warnings] == [
        WarnReason.NOT_THERAPY_PROCEDURE
    ]


def test_a_chargeitem_with_go_makes_the_code_therapy() -> None:
    # ChargeItem has no modifier element in R4B: the profile's chargeitem_modifier_extension.
    url = CONFIG.profile.fhir.chargeitem_modifier_extension
    item = {
        "resourceType": "ChargeItem",
        "id": "ci1",
        "status": "billable",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "92609"}]},
        "subject": {"reference": "Patient/p1"},
        "context": {"reference": "Encounter/e1"},
        "quantity": {"value": 1},
        "extension": [{"url": url, "valueCode": "GO"}],
    }
    result = parse_fhir(collection([*people(), item, procedure("pc1", "92609", 30)]), CONFIG, NOW)
    assert result.warnings == ()
    [doc] = [p for p in result.parts if p.part == "documentation"]
    assert doc.minutes_by_cpt == {"92609": 30}
