"""Issue 20 item 11: `audit` reads TC_RULESET_DIR, TC_NCCI_PTP_FILES, TC_NCCI_MUE_FILES and
TC_FEE_FILES through the worker's loader (runtime/rules.py), so one environment gives `audit`
and the worker the same rule set (same `ruleset_version`) and the same alerts on a history;
`--ruleset` replaces TC_RULESET_DIR only.

Oracle: the fixture rows (tests/fixtures/ncci, CMS layouts of ehr_ncci.md sec. 5.1/5.2):
PTP 97140/97530 modifier indicator 1 from 20200101, no deletion (ccipra-v322r0-f4.TXT line 12);
MUE 97110 = 4, MAI 3 in the file effective 2026-01-01; fee 97530 in 2026 for any payer 35.10.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import streams.app
from cli.audit import run_audit
from compliance.ruleset import default_ruleset, load_ruleset
from runtime.settings import Settings
from streams.app import create_engine
from tests.factories import line, other_visit, raw

FIX = Path(__file__).parents[2] / "fixtures" / "ncci"
MUE = FIX / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv"
FEE = FIX / "fee_schedule_test.csv"
EXE = Path(sys.executable).parent / "therapy-compliance"


def _history(tmp_path: Path) -> Path:
    a = other_visit("V-A", [line("1", "97140", 1, 15)])
    b = other_visit("V-B", [line("1", "97530", 1, 15)])  # same patient, NPI, day as V-A
    c = other_visit("V-C", [line("1", "97110", 5, 75)], dos="2026-03-05")  # 5 > MUE 4
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(raw(v) for v in (a, b, c)) + b"\n")
    return path


def _rules_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    (d / "ncci" / "ptp").mkdir(parents=True)
    shutil.copy(FIX / "ccipra-v322r0-f4.TXT", d / "ncci" / "ptp")
    return d


def _audit(
    history: Path, tc: dict[str, str], *args: str
) -> tuple[int, list[dict[str, Any]], dict[str, Any], str]:
    """The installed command, in an environment holding only `tc` as TC_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TC_")} | tc
    proc = subprocess.run(
        [str(EXE), "audit", str(history), *args], capture_output=True, env=env, timeout=60
    )
    alerts = [orjson.loads(x) for x in proc.stdout.splitlines()]
    err = proc.stderr.decode()
    summary = orjson.loads(err.splitlines()[-1])["summary"] if proc.returncode != 2 else {}
    return proc.returncode, alerts, summary, err


def _comparable(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "detected_at"} for a in alerts]  # the clock


def test_one_environment_gives_audit_and_the_worker_the_same_rules(tmp_path: Path) -> None:
    history = _history(tmp_path)
    tc = {
        "TC_RULESET_DIR": str(_rules_dir(tmp_path)),
        "TC_NCCI_MUE_FILES": str(MUE),
        "TC_FEE_FILES": str(FEE),
    }
    # The worker's engine, as streams/app.py builds it from the settings.
    engine = create_engine(Settings.from_env(tc))
    out = io.BytesIO()
    with history.open("rb") as stream:
        run_audit(stream, out, io.StringIO(), engine=engine)
    worker_alerts = [orjson.loads(x) for x in out.getvalue().splitlines()]

    code, alerts, summary, err = _audit(history, tc)
    assert code == 0, err
    assert summary["ruleset_version"] == engine.ruleset_version != default_ruleset().version
    assert {a["ruleset_version"] for a in alerts} == {engine.ruleset_version}
    assert _comparable(alerts) == _comparable(worker_alerts)
    # Each variable was used: the PTP pair of TC_RULESET_DIR, the MUE of TC_NCCI_MUE_FILES,
    # the fee of TC_FEE_FILES (no allowed_amount on the line: the fee schedule's amount).
    got = {(a["visit_id"], a["rule_id"]): a for a in alerts}
    assert set(got) == {("V-B", "NCCI_PTP_CONFLICT"), ("V-C", "MUE_EXCEEDED")}
    assert got["V-B", "NCCI_PTP_CONFLICT"]["amount_at_risk"] == "35.10"

    # Without the variables: the package's rules, and neither alert.
    code, alerts, summary, _ = _audit(history, {})
    assert code == 0 and alerts == [] and summary["ruleset_version"] == default_ruleset().version


def test_ruleset_option_replaces_the_directory_and_keeps_the_listed_files(
    tmp_path: Path,
) -> None:
    history = _history(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    tc = {"TC_RULESET_DIR": str(_rules_dir(tmp_path)), "TC_NCCI_MUE_FILES": str(MUE)}
    code, alerts, summary, err = _audit(history, tc, "--ruleset", str(empty))
    assert code == 0, err
    assert [(a["visit_id"], a["rule_id"]) for a in alerts] == [("V-C", "MUE_EXCEEDED")]
    assert summary["ruleset_version"] == load_ruleset(empty, mue_files=[MUE]).version


def test_a_bad_rule_variable_stops_audit_naming_it(tmp_path: Path) -> None:
    history = _history(tmp_path)
    code, alerts, _, err = _audit(history, {"TC_NCCI_PTP_FILES": str(tmp_path / "no.TXT")})
    assert code == 2 and alerts == []
    assert "TC_NCCI_PTP_FILES" in err and "no.TXT" in err
    code, _, _, err = _audit(history, {"TC_RULESET_DIR": str(tmp_path / "nowhere")})
    assert code == 2 and "TC_RULESET_DIR" in err


def test_a_bad_file_in_a_rule_variable_is_named_with_the_variable_and_its_path(
    tmp_path: Path,
) -> None:
    # A CMS PTP file listed in TC_NCCI_PTP_FILES whose line 13 is cut after column 1 (the
    # fixture's line 12 is its first data row): the error names the variable and the path as
    # given, not "rule set (the package's)" (final review of issue 20 item 11).
    bad = tmp_path / "lists" / "ccipra-v322r0-f4.TXT"
    bad.parent.mkdir()
    lines = (FIX / "ccipra-v322r0-f4.TXT").read_bytes().split(b"\n")
    lines.insert(12, b"97110")
    bad.write_bytes(b"\n".join(lines))
    code, alerts, _, err = _audit(_history(tmp_path), {"TC_NCCI_PTP_FILES": str(bad)})
    assert code == 2 and alerts == []
    assert f"TC_NCCI_PTP_FILES entry {bad}: " in err and "line 13" in err
    assert "(the package's)" not in err


def test_a_stray_top_level_file_is_said_to_have_no_place(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "changes.txt").write_text("what changed this quarter\n")
    code, _, _, err = _audit(_history(tmp_path), {"TC_RULESET_DIR": str(d)})
    assert code == 2 and "changes.txt is at the top level" in err
    assert "nowhere" not in err and "move it out of the rule set" in err


def test_a_misplaced_cms_file_stops_audit_and_the_worker_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    history = _history(tmp_path)
    d = tmp_path / "flat"
    d.mkdir()
    shutil.copy(FIX / "ccipra-v322r0-f4.TXT", d)  # at the top level, not in ncci/ptp/
    code, _, _, err = _audit(history, {"TC_RULESET_DIR": str(d)})
    assert code == 2 and "ccipra-v322r0-f4.TXT is at the top level" in err
    assert "belongs in ncci/ptp/" in err
    try:
        create_engine(Settings.from_env({"TC_RULESET_DIR": str(d)}))
    except ValueError as exc:
        assert "ccipra-v322r0-f4.TXT is at the top level: it belongs in ncci/ptp/" in str(exc)
    else:
        raise AssertionError("the worker's loader accepted a misplaced PTP file")
    # The worker's start: one line naming the file, exit 78 (EX_CONFIG), no traceback.
    for k in [k for k in os.environ if k.upper().startswith("TC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("TC_RULESET_DIR", str(d))
    monkeypatch.setattr(streams.app, "_APP", None)
    with pytest.raises(SystemExit) as exit_:
        streams.app.get_app()
    assert exit_.value.code == 78
    err = capsys.readouterr().err
    assert err.startswith("therapy-compliance worker: rule set ") and err.count("\n") == 1
    assert "ccipra-v322r0-f4.TXT is at the top level: it belongs in ncci/ptp/" in err
