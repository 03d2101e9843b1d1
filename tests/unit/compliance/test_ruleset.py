"""Rule sets (compliance/ruleset.py): loaded from a directory, validated once, with a stable
`ruleset_version`; and the compare-rulesets dry run (cli/compare.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from cli.compare import compare, compare_main
from compliance.ruleset import ENGINE_VERSION, RuleSetError, default_ruleset, load_ruleset
from tests.factories import line, other_visit, raw

FIX = Path(__file__).parents[2] / "fixtures" / "ncci"
DATA = Path(__file__).parents[3] / "compliance" / "data"


def ncci_dir(tmp_path: Path, name: str = "new") -> Path:
    d = tmp_path / name
    (d / "ncci" / "ptp").mkdir(parents=True)
    (d / "ncci" / "mue").mkdir(parents=True)
    shutil.copy(FIX / "ccipra-v322r0-f4.TXT", d / "ncci" / "ptp")
    shutil.copy(FIX / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv", d / "ncci" / "mue")
    return d


def test_default_version_is_stable_and_names_engine_and_files() -> None:
    a, b = default_ruleset(), load_ruleset(DATA)
    assert a.version == b.version and a.version.startswith("rs-") and len(a.version) == 19
    assert [r for r, _, _ in a.files] == [
        "cpt_catalog.csv",
        "payer_policies.toml",
        "ncci_policy.toml",
        "fee_schedule.csv",
        "episode_policy.toml",  # episodes of care: part of the rule set and its version
        "kx_thresholds.toml",
    ]
    assert ENGINE_VERSION == "0.1.0"


def test_version_changes_with_any_byte_and_not_with_location(tmp_path: Path) -> None:
    base = default_ruleset().version
    d1, d2 = ncci_dir(tmp_path, "one"), ncci_dir(tmp_path, "two")
    v1, v2 = load_ruleset(d1).version, load_ruleset(d2).version
    assert v1 == v2 != base
    ptp = d2 / "ncci" / "ptp" / "ccipra-v322r0-f4.TXT"
    ptp.write_bytes(ptp.read_bytes().replace(b"Standards of medical", b"Standards of Medical"))
    assert load_ruleset(d2).version != v1


def test_directory_files_override_package_files_and_explicit_files_add(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "fee_schedule.csv").write_bytes((FIX / "fee_schedule_test.csv").read_bytes())
    rs = load_ruleset(d, mue_files=[FIX / "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"])
    assert len(rs.fees) == 9 and len(rs.mue) == 1 and len(rs.ptp) == 3 * 8  # P.8 pairs only


def test_invalid_files_are_rejected_with_their_name(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="does not exist"):
        load_ruleset(tmp_path / "nope")
    d = ncci_dir(tmp_path)
    shutil.copy(FIX / "medicaid-ccipra-v322r0-f4.TXT", d / "ncci" / "ptp")
    with pytest.raises(ValueError, match=r"medicaid-ccipra-v322r0-f4\.TXT line 2: .*Medicaid"):
        load_ruleset(d)
    d2 = tmp_path / "fees"
    d2.mkdir()
    (d2 / "fee_schedule.csv").write_text(
        "code,year,payer,locality,amount,source\n97110,2026,*,X,12.5.0,test\n"
    )
    with pytest.raises(ValueError, match=r"fee_schedule.csv line 2, column 5 \(amount\): amount"):
        load_ruleset(d2)
    (d2 / "fee_schedule.csv").write_text(
        "code,year,payer,locality,amount,source\n"
        "97110,2026,*,X,12.50,test\n97110,2026,*,Y,13.00,test\n"
    )
    with pytest.raises(ValueError, match="two amounts for 97110 in 2026"):
        load_ruleset(d2)


def test_catalog_validation_of_add_on_families() -> None:
    from compliance.catalog import CatalogError, parse_catalog

    h = (
        "code,descriptor,unit_basis,unit_minutes,add_on_to,max_units_per_day,evaluates,"
        "written_report,always_therapy,effective_from,effective_to,replaced_by,source\n"
    )
    prim = "97129,Cog initial,timed,15,,1,,false,true,,,,CPT\n"
    with pytest.raises(CatalogError, match="add_on_to 97999 is not in the catalog"):
        parse_catalog(h + prim + "97130,Cog add,timed,15,97999,,,false,true,,,,CPT\n")
    with pytest.raises(CatalogError, match="names the code itself"):
        parse_catalog(h + "97130,Cog add,timed,15,97130,,,false,true,,,,CPT\n")
    with pytest.raises(CatalogError, match="chains and cycles"):
        parse_catalog(
            h
            + "97129,Cog a,timed,15,97130,1,,false,true,,,,CPT\n"
            + "97130,Cog b,timed,15,97129,1,,false,true,,,,CPT\n"
        )
    with pytest.raises(CatalogError, match="needs max_units_per_day"):
        parse_catalog(
            h + "97129,Cog,timed,15,,,,false,true,,,,CPT\n"
            "97130,Cog add,timed,15,97129,,,false,true,,,,CPT\n"
        )
    with pytest.raises(CatalogError, match="mixes timed and untimed"):
        parse_catalog(h + prim + "97130,Cog add,service,,97129,,,false,true,,,,CPT\n")
    with pytest.raises(CatalogError, match="unit_minutes is required for timed codes"):
        parse_catalog(h + "97110,Exercise,timed,,,,,false,true,,,,CPT\n")
    with pytest.raises(CatalogError, match="evaluation code"):
        parse_catalog(h + "97110,Exercise,timed,15,,,PT,false,true,,,,CPT\n")


def test_compare_rulesets_reports_added_and_removed_per_rule(tmp_path: Path) -> None:
    hist = tmp_path / "history.jsonl"
    a = other_visit("V-A", [line("1", "97140", 1, 15)])
    b = other_visit("V-B", [line("1", "97530", 1, 15)])
    c = other_visit("V-C", [line("1", "97110", 5, 75)], dos="2026-03-05")
    hist.write_bytes(b"\n".join(raw(v) for v in (a, b, c)) + b"\n")
    report = compare(DATA, ncci_dir(tmp_path), hist)
    assert report["by_rule"] == {
        "MUE_EXCEEDED": {"added": 1, "removed": 0},
        "NCCI_PTP_CONFLICT": {"added": 1, "removed": 0},
    }
    back = compare(ncci_dir(tmp_path, "again"), DATA, hist)
    assert back["by_rule"] == {
        "MUE_EXCEEDED": {"added": 0, "removed": 1},
        "NCCI_PTP_CONFLICT": {"added": 0, "removed": 1},
    }


def test_compare_main_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hist = tmp_path / "history.jsonl"
    a = other_visit("V-A", [line("1", "97140", 1, 15)])
    b = other_visit("V-B", [line("1", "97530", 1, 15)])
    hist.write_bytes(raw(a) + b"\n" + raw(b) + b"\n")
    new = ncci_dir(tmp_path)
    assert compare_main(str(DATA), str(new), str(hist)) == 0
    table = capsys.readouterr().out
    assert "NCCI_PTP_CONFLICT" in table and "added" in table
    assert compare_main(str(DATA), str(new), str(hist), as_json=True) == 0
    body = orjson.loads(capsys.readouterr().out)
    assert body["added"][0]["visit_id"] == "V-B" and body["removed"] == []
    assert compare_main(str(DATA), str(tmp_path / "nope"), str(hist)) == 2


MISPLACED = [
    # (where the file is put, the message's "belongs in" part) - issue 20 item 11
    ("ccipra-v322r0-f4.TXT", "ccipra-v322r0-f4.TXT is at the top level: it belongs in ncci/ptp/"),
    (
        "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv",
        "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv is at the top level: it belongs in "
        "ncci/mue/",
    ),
    ("fee_schedule_test.csv", "fee_schedule_test.csv is at the top level: it belongs in fees/"),
    ("ncci/ccipra-v322r0-f4.TXT", "ncci/ccipra-v322r0-f4.TXT is not read: it belongs in ncci/ptp/"),
    (
        "ncci/mue/ccipra-v322r0-f4.TXT",
        "ncci/mue/ccipra-v322r0-f4.TXT is not read there (only .csv files): it belongs in "
        "ncci/ptp/",
    ),
    ("ncci/ptp/ccipra-v322r0-f4.xlsx", "ncci/ptp/ccipra-v322r0-f4.xlsx is not read there"),
    ("fees/fee_schedule_test.txt", "fees/fee_schedule_test.txt is not read there (only .csv"),
    ("mue/MCR_MUE_PractitionerServices_Eff_01-01-2026.csv", "mue/ is not a rule set directory"),
]


@pytest.mark.parametrize(("where", "message"), MISPLACED)
def test_a_file_the_loader_would_not_read_is_refused_naming_where_it_belongs(
    tmp_path: Path, where: str, message: str
) -> None:
    d = tmp_path / "rules"
    target = d / where
    target.parent.mkdir(parents=True)
    source = FIX / Path(where).name
    target.write_bytes(source.read_bytes() if source.exists() else b"x")
    with pytest.raises(RuleSetError, match="rule set directory") as exc:
        load_ruleset(d)
    assert message in str(exc.value)


def test_files_in_their_places_and_non_data_files_load(tmp_path: Path) -> None:
    d = ncci_dir(tmp_path)
    (d / "fees").mkdir()
    shutil.copy(FIX / "fee_schedule_test.csv", d / "fees")
    (d / "README.md").write_text("Q1 2026 rules\n")  # documentation beside the data: allowed
    (d / ".git").mkdir()  # hidden entries: left alone
    (d / "__pycache__").mkdir()  # as in the package's compliance/data once imported
    (d / "ncci" / "ptp" / ".gitkeep").write_text("")
    rs = load_ruleset(d)
    assert len(rs.fees) == 9 and len(rs.mue) == 1
    assert [name for role, name, _ in rs.files if role in ("ptp", "mue", "fees")] == [
        "ccipra-v322r0-f4.TXT",
        "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv",
        "fee_schedule_test.csv",
    ]


def test_a_fee_file_not_in_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    (d / "fees").mkdir(parents=True)
    text = (FIX / "fee_schedule_test.csv").read_text().replace("TEST locality", "Peña County")
    (d / "fees" / "latin1.csv").write_bytes(text.encode("latin-1"))  # \xf1: not UTF-8
    with pytest.raises(RuleSetError, match=r"^latin1\.csv: not UTF-8 text"):
        load_ruleset(d)


# Review defect 7: the placement messages say what is wrong.


def test_a_folder_inside_ncci_ptp_is_said_to_be_a_sub_folder(tmp_path: Path) -> None:
    # CMS's zip unpacked into ncci/ptp/ as a folder of its own name: not read there.
    d = tmp_path / "rules"
    (d / "ncci" / "ptp" / "ccipra-v322r0-f4").mkdir(parents=True)
    shutil.copy(FIX / "ccipra-v322r0-f4.TXT", d / "ncci" / "ptp" / "ccipra-v322r0-f4")
    with pytest.raises(RuleSetError) as exc:
        load_ruleset(d)
    message = str(exc.value)
    assert "ncci/ptp/ccipra-v322r0-f4/ is a folder: sub-folders are not read" in message
    assert "move its files up into ncci/ptp/" in message and "belongs in" not in message


def test_notes_are_left_alone_everywhere(tmp_path: Path) -> None:
    # docs/rules.md: README files, NOTES files and markdown are an operator's notes; they are
    # neither read as data (README.txt in ncci/ptp/ would otherwise be read as a PTP file) nor
    # refused, at the top level, in ncci/, ncci/ptp/, ncci/mue/ and fees/.
    d = ncci_dir(tmp_path)
    (d / "fees").mkdir()
    for where in ("", "ncci", "ncci/ptp", "ncci/mue", "fees"):
        (d / where / "README.md").write_text("Q1 2026\n")
    (d / "ncci" / "ptp" / "README.txt").write_text("from CMS's zip\n")
    (d / "NOTES.txt").write_text("who loaded what\n")
    (d / "fees" / "changes.md").write_text("x\n")
    rs = load_ruleset(d)
    assert [name for role, name, _ in rs.files if role in ("ptp", "mue", "fees")] == [
        "ccipra-v322r0-f4.TXT",
        "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv",
    ]
    assert rs.version == load_ruleset(ncci_dir(tmp_path / "clean")).version


def test_a_cms_file_in_fees_is_said_to_belong_in_ncci(tmp_path: Path) -> None:
    mue = FIX / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv"
    d = tmp_path / "rules"
    (d / "fees").mkdir(parents=True)
    shutil.copy(mue, d / "fees")
    with pytest.raises(RuleSetError) as exc:
        load_ruleset(d)
    assert "fees/MCR_MUE_PractitionerServices_Eff_01-01-2026.csv is not a fee schedule" in str(
        exc.value
    )
    assert "belongs in ncci/mue/" in str(exc.value) and "UTF-8" not in str(exc.value)
    # Renamed (or given by TC_FEE_FILES): recognised by its first line, CMS's MUE notice
    # (ehr_ncci.md 5.2), before it is decoded.
    renamed = tmp_path / "q1-values.csv"
    renamed.write_bytes(mue.read_bytes())
    with pytest.raises(RuleSetError) as exc:
        load_ruleset(None, fee_files=[renamed])
    assert "CMS MUE file's AMA notice" in str(exc.value) and "ncci/mue/" in str(exc.value)
    ptp = tmp_path / "edits.csv"
    ptp.write_bytes((FIX / "ccipra-v322r0-f4.TXT").read_bytes())
    with pytest.raises(RuleSetError, match="CMS PTP file's AMA notice; it belongs in ncci/ptp/"):
        load_ruleset(None, fee_files=[ptp])
