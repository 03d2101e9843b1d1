"""`therapy-compliance audit` (EVENTS.md "Command line"): every CMS worked example of
CMS Pub. 100-04, Ch. 5, sec. 20.2 fed as JSON Lines gives the right alerts."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from cli.audit import run_audit
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


# --- claim-level state across lines (EVENTS.md "Command line": state kept across the lines
# of one run, in input order, as the worker keeps it across a partition) -------------------


def _ncci_dir(tmp_path: Path) -> Path:
    import shutil

    fix = Path(__file__).parents[2] / "fixtures" / "ncci"
    d = tmp_path / "rules"
    (d / "ncci" / "ptp").mkdir(parents=True)
    shutil.copy(fix / "ccipra-v322r0-f4.TXT", d / "ncci" / "ptp")
    return d


def _pair_lines(npi_b: str) -> bytes:
    from tests.factories import line, other_visit

    a = other_visit("V-A", [line("1", "97140", 1, 15)])
    b = other_visit("V-B", [line("1", "97530", 1, 15)], npi=npi_b)
    return raw(a) + b"\n" + raw(b) + b"\n"


def test_audit_finds_an_ncci_pair_split_across_two_visits_of_one_npi(tmp_path: Path) -> None:
    from compliance import Engine
    from compliance.ruleset import load_ruleset

    engine = Engine(ruleset=load_ruleset(_ncci_dir(tmp_path)))
    out, err = io.BytesIO(), io.StringIO()
    run_audit(io.BytesIO(_pair_lines("1234567893")), out, err, engine=engine)
    alerts = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert [(a["visit_id"], a["rule_id"]) for a in alerts] == [("V-B", "NCCI_PTP_CONFLICT")]
    assert alerts[0]["ruleset_version"] == engine.ruleset_version
    out = io.BytesIO()
    run_audit(io.BytesIO(_pair_lines("1245319599")), out, io.StringIO(), engine=engine)
    assert out.getvalue() == b""  # the same two visits for different NPIs: no edit


def test_audit_ruleset_option_through_the_cli(tmp_path: Path) -> None:
    from cli.audit import audit_main

    path = tmp_path / "visits.jsonl"
    path.write_bytes(_pair_lines("1234567893"))
    assert audit_main(str(path), ruleset=str(tmp_path / "missing")) == 2
    import contextlib

    buf = io.BytesIO()

    class _Out:
        buffer = buf

    with contextlib.redirect_stderr(io.StringIO()):
        import sys

        real = sys.stdout
        sys.stdout = _Out()  # type: ignore[assignment]
        try:
            assert audit_main(str(path), ruleset=str(_ncci_dir(tmp_path))) == 0
        finally:
            sys.stdout = real
    assert [orjson.loads(x)["rule_id"] for x in buf.getvalue().splitlines()] == [
        "NCCI_PTP_CONFLICT"
    ]


def test_audit_evaluation_duplicate_across_lines_same_result_as_stream() -> None:
    from datetime import UTC, datetime

    from compliance import Engine, PatientHistory
    from tests.factories import line, model, other_visit

    visits = [
        other_visit("V-A", [line("1", "97163", 1)]),
        other_visit("V-B", [line("1", "97164", 1)]),
    ]
    out = io.BytesIO()
    run_audit(io.BytesIO(b"\n".join(raw(v) for v in visits) + b"\n"), out, io.StringIO())
    audited = [orjson.loads(x)["alert_id"] for x in out.getvalue().splitlines()]
    # The worker's way: seq = offset; audit's: seq = line number. Same order, same alerts.
    engine, h, streamed = Engine(), PatientHistory(), []
    for seq, v in enumerate(visits, start=100):
        o = engine.evaluate(model(v), datetime.now(UTC), h, seq)
        streamed += [a.alert_id for a in o.alerts]
        h = o.history or h
    assert audited == streamed and len(audited) == 1


def test_a_bom_at_the_start_of_the_file_is_skipped_through_the_cli(tmp_path: Path) -> None:
    """Windows tools write a UTF-8 byte-order mark before the first line: the first visit must
    not be lost (docs/rules.md "Input hygiene")."""
    exe = Path(sys.executable).parent / "therapy-compliance"
    plain = subprocess.run([str(exe), "audit", "-"], input=jsonl(), capture_output=True, timeout=60)
    path = tmp_path / "windows-export.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl().replace(b"\n", b"\r\n"))
    for args, data in (([str(path)], None), (["-"], path.read_bytes())):
        proc = subprocess.run(
            [str(exe), "audit", *args], input=data, capture_output=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert alerts_of(proc) == alerts_of(plain) != []
        summary = orjson.loads(proc.stderr.splitlines()[-1])["summary"]
        assert summary["visits_read"] == len(EXAMPLES) and summary["invalid_lines"] == 0


def alerts_of(proc: Any) -> list[tuple[str, str, str]]:
    alerts = [orjson.loads(x) for x in proc.stdout.splitlines()]
    return sorted((a["visit_id"], a["rule_id"], a["alert_id"]) for a in alerts)


def test_a_bom_anywhere_else_makes_its_line_invalid() -> None:
    good = raw(EXAMPLES[0][1])
    out, err = io.BytesIO(), io.StringIO()
    data = good + b"\n\xef\xbb\xbf" + good + b"\n"
    summary = run_audit(io.BytesIO(data), out, err)
    assert summary.visits_read == 1 and summary.invalid_lines == 1
    first = orjson.loads(err.getvalue().splitlines()[0])
    assert first["line"] == 2 and first["reason"] == "invalid_json"
    assert "UTF-8 byte-order mark" in first["detail"]
    # Only a BOM at the very start is the file's: after a blank first line it is a record's.
    summary = run_audit(io.BytesIO(b"\n\xef\xbb\xbf" + good + b"\n"), out, io.StringIO())
    assert summary.invalid_lines == 1


def test_the_files_bom_does_not_count_against_max_bytes() -> None:
    """The size limit is the record's (docs/rules.md "Input hygiene"): a first line of exactly
    --max-bytes after the file's BOM is read like the same line without it, with LF, CRLF or
    no line end; one byte more is too large either way."""
    good = raw(EXAMPLES[0][1])
    limit = len(good)
    for end in (b"\n", b"\r\n", b""):
        for prefix in (b"", b"\xef\xbb\xbf"):
            err = io.StringIO()
            summary = run_audit(io.BytesIO(prefix + good + end), io.BytesIO(), err, max_bytes=limit)
            assert (summary.visits_read, summary.invalid_lines) == (1, 0), (prefix, end, err)
            over = good.replace(b'"V-', b'"VV-', 1)
            assert len(over) == limit + 1
            err = io.StringIO()
            summary = run_audit(io.BytesIO(prefix + over + end), io.BytesIO(), err, max_bytes=limit)
            assert (summary.visits_read, summary.invalid_lines) == (0, 1), (prefix, end)
            assert orjson.loads(err.getvalue().splitlines()[0])["reason"] == "too_large"
    # A file that is only a BOM holds no record.
    summary = run_audit(io.BytesIO(b"\xef\xbb\xbf"), io.BytesIO(), io.StringIO(), max_bytes=limit)
    assert (summary.visits_read, summary.invalid_lines) == (0, 0)
