"""`therapy-compliance audit --jobs N` (issue 13): N processes give exactly the output of one
process (cli/audit.py "Output order"): the same alerts with the same ids in the same order,
the same invalid lines with the same reasons and details, the same summary and exit code, on a
history with cross-visit and episode state and a poison corpus. The oracle is the one-process
run of the same command (the behaviour the parallel one must reproduce); `detected_at` is the
clock and is left out of the comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import Rejection, decode_visit
from schemas.visit_status import VisitStatus
from synthetic.visits import EpisodeGenerator
from tests.factories import line, other_visit, raw
from tests.unit.schemas.test_decode_hygiene import DUPLICATES

ROOT = Path(__file__).parents[3]
MAX_BYTES = 20_000


def big_int_extra(visit: dict[str, Any]) -> bytes:
    """A valid visit orjson cannot read (1e400, infinity as a double, in an unknown field,
    which the contract ignores): the router must not fall back to the line number for it."""
    return raw(visit)[:-1] + b',"vendor_measure":1e400}'


def history() -> bytes:
    records = [r.value for r in EpisodeGenerator(seed=11, malformed_share=0.05).records(1500)]
    first_eval = other_visit("V-EVAL-A", [line("1", "97163", 1)])
    second_eval = other_visit("V-EVAL-B", [line("1", "97164", 1)])
    poison = [value for _, value, _ in DUPLICATES] + [
        b"not json",
        b"[]",
        b'{"schema_version": 3}',
        b"\xef\xbb\xbf" + raw(first_eval),  # a BOM after line 1 belongs to the record
        raw(other_visit("V-SPACE", [line("1", "97110", 1, 15)], patient_ref="Jane Doe")),
        raw(other_visit("V-NUMREF", [line("1", "97110", 1, 15)], patient_ref=1234)),
        b'{"x": "' + b"a" * (MAX_BYTES + 10) + b'"}',  # over --max-bytes
        b"",  # blank lines are skipped, not counted
        b"   ",
    ]
    lines = [b"\xef\xbb\xbf" + records[0], raw(first_eval)]  # the file's BOM: skipped
    step = len(records) // len(poison)
    for i, value in enumerate(records[1:], start=1):
        lines.append(value)
        if i % step == 0 and poison:
            lines.append(poison.pop())
    lines += poison
    lines.append(big_int_extra(second_eval))  # state from line 2 decides its alert
    return b"\r\n".join(lines[:700]) + b"\n" + b"\n".join(lines[700:]) + b"\n"


def audit(args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", "--max-bytes", str(MAX_BYTES), *args],
        input=data,
        capture_output=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def alerts(proc: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    out = []
    for row in proc.stdout.splitlines():
        alert = orjson.loads(row)
        del alert["detected_at"]
        out.append(alert)
    return out


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "history.jsonl"
    path.write_bytes(history())
    return path


@pytest.fixture(scope="module")
def one_process(history_file: Path) -> subprocess.CompletedProcess[bytes]:
    return audit(["--jobs", "1", str(history_file)])


def test_the_history_exercises_state_and_poison(
    one_process: subprocess.CompletedProcess[bytes],
) -> None:
    second = other_visit("V-EVAL-B", [line("1", "97164", 1)])
    assert not isinstance(decode_visit(big_int_extra(second)), Rejection)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(big_int_extra(second))
    assert one_process.returncode == 1
    got = alerts(one_process)
    rules = {a["rule_id"] for a in got}
    # Cross-visit state (an evaluation duplicated across two lines far apart) and episode
    # and KX state (PLAN_OF_CARE_MISSING ... need the patient's earlier visits).
    assert ("V-EVAL-B", "EVALUATION_DUPLICATE") in {(a["visit_id"], a["rule_id"]) for a in got}
    assert {"PLAN_OF_CARE_MISSING", "PROGRESS_REPORT_OVERDUE"} <= rules
    assert len({a["patient_ref"] for a in got}) > 20
    errs = [orjson.loads(x) for x in one_process.stderr.splitlines()]
    reasons = {e["reason"] for e in errs[:-1]}
    assert reasons == {"invalid_json", "schema_violation", "unsupported_version", "too_large"}
    assert errs[-1]["summary"]["patient_ref_rejections"] == {"space": 1, "type": 1}
    assert len(errs) - 1 > 50


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_give_the_one_process_output(
    history_file: Path, one_process: subprocess.CompletedProcess[bytes], jobs: int
) -> None:
    proc = audit(["--jobs", str(jobs), str(history_file)])
    assert proc.returncode == one_process.returncode
    assert alerts(proc) == alerts(one_process)  # same alerts, ids and order
    assert proc.stderr == one_process.stderr  # dead letters, details, order, summary


def test_jobs_from_stdin(
    history_file: Path, one_process: subprocess.CompletedProcess[bytes]
) -> None:
    proc = audit(["--jobs", "2", "-"], data=history_file.read_bytes())
    assert proc.returncode == one_process.returncode
    assert alerts(proc) == alerts(one_process)
    assert proc.stderr == one_process.stderr


def statuses(path: Path) -> list[dict[str, Any]]:
    out = []
    for row in path.read_bytes().splitlines():
        VisitStatus.model_validate_json(row)
        status = orjson.loads(row)
        del status["updated_at"]
        out.append(status)
    return out


def test_status_out_is_the_same_for_any_number_of_jobs(history_file: Path, tmp_path: Path) -> None:
    # EVENTS.md "VisitStatus v1": audit --status-out writes the status records in the order the
    # stream publishes them; like the alerts, the same for any --jobs.
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    a = audit(["--jobs", "1", "--status-out", str(one), str(history_file)])
    b = audit(["--jobs", "2", "--status-out", str(two), str(history_file)])
    assert a.returncode == b.returncode == 1 and alerts(a) == alerts(b)
    first, second = statuses(one), statuses(two)
    assert first == second and len(first) > 600
    # Every visit's first status is version 1 and each later one +1 (a table, per visit).
    versions: dict[str, int] = {}
    for st in first:
        assert st["version"] == versions.get(st["visit_id"], 0) + 1
        versions[st["visit_id"]] = st["version"]


def test_status_out_to_an_unwritable_path_is_a_clear_error(history_file: Path) -> None:
    proc = audit(["--status-out", "/nonexistent-dir/s.jsonl", str(history_file)])
    assert proc.returncode == 2 and b"cannot write /nonexistent-dir/s.jsonl" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_jobs_below_one_is_a_clear_error(history_file: Path, value: str) -> None:
    proc = audit(["--jobs", value, str(history_file)])
    assert proc.returncode == 2
    assert b"--jobs" in proc.stderr and proc.stdout == b""
    assert (b"must be 1 or more" in proc.stderr) == (value != "two")


def test_audit_main_refuses_jobs_below_one(
    history_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.audit import audit_main

    assert audit_main(str(history_file), jobs=0) == 2
    assert "--jobs must be 1 or more" in capsys.readouterr().err


def test_jobs_on_a_missing_file(tmp_path: Path) -> None:
    proc = audit(["--jobs", "2", str(tmp_path / "missing.jsonl")])
    assert proc.returncode == 2 and b"cannot read" in proc.stderr


def test_a_valid_visit_goes_to_its_patients_process_whatever_its_line() -> None:
    from cli.audit import owner
    from schemas.patient_ref import DEFAULT_PATTERN

    first = raw(other_visit("V-EVAL-A", [line("1", "97163", 1)]))
    second = other_visit("V-EVAL-B", [line("1", "97164", 1)])
    for count in range(2, 6):
        expected = owner(first, 1, count, MAX_BYTES, DEFAULT_PATTERN)
        for value in (raw(second), big_int_extra(second), b" " + raw(second) + b"\t"):
            got = {owner(value, n, count, MAX_BYTES, DEFAULT_PATTERN) for n in range(1, 12)}
            assert got == {expected}


def test_a_failing_process_fails_the_run_without_partial_output(history_file: Path) -> None:
    """A process that dies (here: the engine raises) makes the run an error, not a silent
    partial result."""
    import io

    from cli.audit import run_audit_jobs
    from compliance import Engine

    class Broken(Engine):
        __slots__ = ()

        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    out, err = io.BytesIO(), io.StringIO()
    with pytest.raises(RuntimeError, match="audit process"):
        run_audit_jobs(str(history_file), io.BytesIO(), out, err, Broken(), 2, MAX_BYTES)
    assert out.getvalue() == b"" and err.getvalue() == ""
