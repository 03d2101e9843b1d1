"""Issue 20 item 12: `compare-rulesets` reports the history's invalid lines as `audit` does
(each on stderr as {"line", "reason", "detail"}, counted, exit 1, valid lines still compared),
says which rule set (OLD or NEW) failed to load, and its table names each rule set's files.

Oracle: the lines and files each test writes (a line that is not JSON is audit's
`invalid_json`, EVENTS.md "Command line"); the PTP fixture's 97140/97530 row (indicator 1,
tests/fixtures/ncci) makes the NEW rule set add one NCCI_PTP_CONFLICT on V-B.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import orjson
import pytest

from cli.compare import compare_main
from tests.factories import line, other_visit, raw

FIX = Path(__file__).parents[2] / "fixtures" / "ncci"
PTP = FIX / "ccipra-v322r0-f4.TXT"
DATA = Path(__file__).parents[3] / "compliance" / "data"


def _new_dir(tmp_path: Path) -> Path:
    d = tmp_path / "new"
    (d / "ncci" / "ptp").mkdir(parents=True)
    shutil.copy(PTP, d / "ncci" / "ptp")
    return d


def _history(tmp_path: Path, *bad: tuple[int, bytes]) -> Path:
    lines = [
        raw(other_visit("V-A", [line("1", "97140", 1, 15)])),
        raw(other_visit("V-B", [line("1", "97530", 1, 15)])),
    ]
    for at, text in bad:  # inserted as line `at` (1-based)
        lines.insert(at - 1, text)
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_invalid_history_lines_are_reported_counted_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = _history(tmp_path, (2, b"not json"), (4, b"{"))
    new = _new_dir(tmp_path)
    assert compare_main(str(DATA), str(new), str(hist), as_json=True) == 1
    got = capsys.readouterr()
    errs = [orjson.loads(x) for x in got.err.splitlines()]
    assert [(e["line"], e["reason"]) for e in errs] == [(2, "invalid_json"), (4, "invalid_json")]
    body = orjson.loads(got.out)
    assert (body["visits_read"], body["invalid_lines"]) == (2, 2)
    assert "invalid" not in body  # the reports are on stderr only
    # The valid lines are still compared: V-B (now line 3) gets the new edit.
    assert body["by_rule"] == {"NCCI_PTP_CONFLICT": {"added": 1, "removed": 0}}
    assert compare_main(str(DATA), str(new), str(hist)) == 1  # the table too
    table = capsys.readouterr().out
    assert "history: 2 visits read, 2 invalid lines" in table
    # A clean history: exit 0, nothing on stderr.
    assert compare_main(str(DATA), str(new), str(_history(tmp_path))) == 0
    assert capsys.readouterr().err == ""


def test_a_load_error_names_which_rule_set_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hist = _history(tmp_path)
    bad = tmp_path / "bad"
    (bad / "ncci" / "ptp").mkdir(parents=True)
    (bad / "ncci" / "ptp" / PTP.name).write_bytes(
        PTP.read_bytes().replace(b"97140\t97530", b"9714\t97530")  # a 4-digit column 1
    )
    assert compare_main(str(bad), str(DATA), str(hist)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"therapy-compliance compare-rulesets: OLD rule set {bad}: ")
    assert f"{PTP.name} line 12, column 1" in err  # the fixture's 97140/97530 row
    assert compare_main(str(DATA), str(tmp_path / "missing"), str(hist)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"therapy-compliance compare-rulesets: NEW rule set {tmp_path}/missing")
    assert compare_main(str(DATA), str(DATA), str(tmp_path / "none.jsonl")) == 2
    assert "HISTORY" in capsys.readouterr().err


def test_the_table_names_each_rule_sets_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _new_dir(tmp_path)
    catalog = (DATA / "cpt_catalog.csv").read_bytes()
    (new / "cpt_catalog.csv").write_bytes(catalog + b"\n")  # a changed byte: a changed file
    assert compare_main(str(DATA), str(new), str(_history(tmp_path))) == 0
    rows = {r.split()[0]: r.split()[1:] for r in capsys.readouterr().out.splitlines()}
    old_sha = hashlib.sha256(catalog).hexdigest()[:12]
    new_sha = hashlib.sha256(catalog + b"\n").hexdigest()[:12]
    assert rows["cpt_catalog.csv"] == [old_sha, new_sha, "changed"]
    policies = hashlib.sha256((DATA / "payer_policies.toml").read_bytes()).hexdigest()[:12]
    assert rows["payer_policies.toml"] == [policies, policies, "same"]
    ptp_sha = hashlib.sha256(PTP.read_bytes()).hexdigest()[:12]
    assert rows["ptp:"] == [PTP.name, "-", ptp_sha, "added"]


def test_the_patient_ref_pattern_is_audits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review defect 6: compare-rulesets reads TC_PATIENT_REF_PATTERN (and --patient-ref-pattern)
    # as audit does, so both count the same invalid lines. A third line with patient_ref
    # "Q-1234" is refused by the pattern P-[0-9a-f]+ (the other two lines' "P-88f1" is not):
    # a schema_violation (docs/rules.md "patient_ref alphabet").
    from cli.audit import audit_main

    hist = _history(tmp_path)
    hist.write_bytes(
        hist.read_bytes()
        + raw(other_visit("V-C", [line("1", "97110", 1, 15)], patient_ref="Q-1234"))
        + b"\n"
    )
    new = _new_dir(tmp_path)
    monkeypatch.setenv("TC_PATIENT_REF_PATTERN", "P-[0-9a-f]+")
    assert audit_main(str(hist)) == 1
    audit_err = [orjson.loads(x) for x in capsys.readouterr().err.splitlines()]
    audit_invalid = [(e["line"], e["reason"]) for e in audit_err if "line" in e]
    assert audit_invalid == [(3, "schema_violation")]
    assert compare_main(str(DATA), str(new), str(hist), as_json=True) == 1
    got = capsys.readouterr()
    errs = [orjson.loads(x) for x in got.err.splitlines()]
    assert [(e["line"], e["reason"]) for e in errs] == audit_invalid
    assert orjson.loads(got.out)["invalid_lines"] == 1
    # The option replaces the environment's pattern, as audit's --patient-ref-pattern does.
    assert compare_main(str(DATA), str(new), str(hist), True, "[PQ]-[0-9a-f]+") == 0
    capsys.readouterr()
    # A pattern that cannot be used stops it (exit 2), naming the setting.
    monkeypatch.setenv("TC_PATIENT_REF_PATTERN", "(")
    assert compare_main(str(DATA), str(new), str(hist)) == 2
    assert "TC_PATIENT_REF_PATTERN" in capsys.readouterr().err
