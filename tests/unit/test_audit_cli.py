"""`therapy-compliance audit` (EVENTS.md "Command line"): every CMS worked example of
CMS Pub. 100-04, Ch. 5, sec. 20.2 fed as JSON Lines gives the right alerts."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from streams.audit import run_audit
from tests.factories import raw, timed_visit

EXAMPLES: list[tuple[str, dict[str, Any], list[str]]] = [
    # (name, visit, rule ids expected) - billed as CMS says: no alert; billed otherwise: alert.
    ("example_1_ok", timed_visit(("97112", 2, 24), ("97110", 1, 23)), []),
    (
        "example_1_over",
        timed_visit(("97112", 2, 24), ("97110", 2, 23)),
        ["TIMED_UNITS_EXCEED_MINUTES"],
    ),
    ("example_2_ok", timed_visit(("97112", 1, 20), ("97110", 2, 20)), []),
    (
        "example_2_three_on_one",
        timed_visit(("97112", 3, 20), ("97110", 0, 20)),
        ["TIMED_UNITS_MISALLOCATED"],
    ),
    ("example_3_ok", timed_visit(("97110", 2, 33), ("97140", 1, 7)), []),
    (
        "example_3_misallocated",
        timed_visit(("97110", 3, 33), ("97140", 0, 7)),
        ["TIMED_UNITS_MISALLOCATED"],
    ),
    (
        "example_4_ok",
        timed_visit(("97110", 1, 18), ("97140", 1, 13), ("97116", 1, 10), ("97035", 0, 8)),
        [],
    ),
    (
        "example_4_ultrasound_billed",
        timed_visit(("97110", 1, 18), ("97140", 1, 13), ("97116", 1, 10), ("97035", 1, 8)),
        ["TIMED_UNITS_EXCEED_MINUTES"],
    ),
    ("example_5_ok", timed_visit(("97112", 0, 7), ("97110", 1, 7), ("97140", 0, 7)), []),
    (
        "example_5_three_units",
        timed_visit(("97112", 1, 7), ("97110", 1, 7), ("97140", 1, 7)),
        ["TIMED_UNITS_EXCEED_MINUTES"],
    ),
    (
        "example_5_none_billed",
        timed_visit(("97112", 0, 7), ("97110", 0, 7), ("97140", 0, 7)),
        ["TIMED_UNITS_BELOW_MINUTES"],
    ),
    ("single_97530_60_minutes", timed_visit(("97530", 4, 60)), []),
]


def jsonl() -> bytes:
    out = []
    for i, (name, visit, _) in enumerate(EXAMPLES):
        visit = dict(visit, event_id=f"evt-{i}", visit_id=f"V-{name}")
        out.append(raw(visit))
    return b"\n".join(out) + b"\n"


def expected_by_visit() -> dict[str, list[str]]:
    return {f"V-{name}": rules for name, _, rules in EXAMPLES}


def test_cms_worked_examples_through_the_installed_cli(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_bytes(jsonl())
    exe = Path(sys.executable).parent / "therapy-compliance"
    proc = subprocess.run([str(exe), "audit", str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    alerts = [orjson.loads(x) for x in proc.stdout.splitlines()]
    got: dict[str, list[str]] = {k: [] for k in expected_by_visit()}
    for a in alerts:
        got[a["visit_id"]].append(a["rule_id"])
    assert got == expected_by_visit()
    summary = orjson.loads(proc.stderr.splitlines()[-1])["summary"]
    assert summary["visits_read"] == len(EXAMPLES) and summary["invalid_lines"] == 0
    assert summary["alerts"] == len(alerts)


def test_stdin_invalid_lines_reported_and_exit_1() -> None:
    good = raw(EXAMPLES[1][1])
    data = b"\n".join([b"not json", good, b"", b'{"schema_version": 3}', b"[]", good]) + b"\n"
    exe = Path(sys.executable).parent / "therapy-compliance"
    proc = subprocess.run([str(exe), "audit", "-"], input=data, capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 2  # both valid visits processed
    errs = [orjson.loads(x) for x in proc.stderr.splitlines()]
    assert [(e["line"], e["reason"]) for e in errs[:-1]] == [
        (1, "invalid_json"),
        (4, "unsupported_version"),
        (5, "schema_violation"),
    ]
    assert all(set(e) == {"line", "reason", "detail"} for e in errs[:-1])
    assert errs[-1]["summary"]["visits_read"] == 2
    assert errs[-1]["summary"]["invalid_lines"] == 3
    assert errs[-1]["summary"]["alerts_by_rule"] == {"TIMED_UNITS_EXCEED_MINUTES": 2}


def test_missing_file_is_a_clear_error() -> None:
    exe = Path(sys.executable).parent / "therapy-compliance"
    proc = subprocess.run(
        [str(exe), "audit", "/nonexistent/x.jsonl"], capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert b"cannot read /nonexistent/x.jsonl" in proc.stderr


def test_oversized_line_is_skipped_without_reading_it_whole() -> None:
    good = raw(EXAMPLES[1][1])
    big = b'{"x": "' + b"a" * 5_000_000 + b'"}'
    out, err = io.BytesIO(), io.StringIO()
    summary = run_audit(io.BytesIO(big + b"\n" + good + b"\n"), out, err, max_bytes=10_000)
    assert summary.visits_read == 1 and summary.invalid_lines == 1
    first = orjson.loads(err.getvalue().splitlines()[0])
    assert first["line"] == 1 and first["reason"] == "too_large"
    assert len(out.getvalue().splitlines()) == 1


def test_last_line_without_newline_and_crlf() -> None:
    good = raw(EXAMPLES[1][1])
    out, err = io.BytesIO(), io.StringIO()
    summary = run_audit(io.BytesIO(good + b"\r\n" + good), out, err)
    assert summary.visits_read == 2 and summary.invalid_lines == 0
