"""patient_ref's accepted alphabet (TC_PATIENT_REF_PATTERN; docs/rules.md "Input hygiene").
EVENTS.md: "`patient_ref`, `visit_id`: opaque references. Never a name, MRN, SSN or date of
birth." Default: printable ASCII without spaces, the contract's 1-128 characters."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from cli.audit import run_audit
from ehr.patient import patient_ref as ehr_patient_ref
from runtime.settings import Settings, settings_from_env_or_exit
from schemas.common import DeadLetterReason
from schemas.deadletter import DeadLetter
from schemas.decode import Rejection, decode_visit
from schemas.patient_ref import PatientRefProblem, compile_pattern
from schemas.visit import TherapyVisitCompleted
from streams.metrics import Metrics
from streams.processor import Record, VisitProcessor, guarded, scratch
from synthetic.visits import generator
from tests.factories import raw, timed_visit

LEAK = "Jane Doe 1960-01-01"  # the example


def visit(ref: Any) -> bytes:
    return raw(timed_visit(("97110", 2, 33), ("97140", 1, 7), patient_ref=ref))


def problem(ref: Any, pattern: str | None = None) -> PatientRefProblem | None:
    args = () if pattern is None else (1_048_576, compile_pattern(pattern))
    result = decode_visit(visit(ref), *args)
    if isinstance(result, TherapyVisitCompleted):
        return None
    assert result.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert result.patient_ref is not None, result.detail
    return result.patient_ref


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("P-88f1", None),
        ("!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~", None),  # every printable but the space
        ("X" * 128, None),
        (LEAK, PatientRefProblem.SPACE),
        (" P-1", PatientRefProblem.SPACE),
        ("Jöne", PatientRefProblem.CHARSET),  # the contract's printable ASCII
        ("P-1\t", PatientRefProblem.CHARSET),
        ("", PatientRefProblem.LENGTH),
        ("X" * 129, PatientRefProblem.LENGTH),
        (881, PatientRefProblem.TYPE),
    ],
)
def test_default_alphabet(ref: Any, expected: PatientRefProblem | None) -> None:
    assert problem(ref) == expected


def test_the_rejection_names_the_field_never_the_value() -> None:
    result = decode_visit(visit(LEAK))
    assert isinstance(result, Rejection)
    assert result.detail.startswith("patient_ref: contains a space")
    assert "Jane" not in result.detail and "1960" not in result.detail


def test_a_stricter_pattern_and_one_that_allows_spaces() -> None:
    exact = r"P-[0-9a-f]{20}"
    assert problem("P-88f1", exact) is PatientRefProblem.PATTERN
    assert problem("P-" + "0" * 20, exact) is None
    assert problem(LEAK, exact) is PatientRefProblem.SPACE
    spaced = r"[ -~]+"
    assert problem(LEAK, spaced) is None
    assert problem("Jöne", spaced) is PatientRefProblem.CHARSET  # the pattern cannot widen


def test_references_the_ehr_path_and_the_demo_feed_write_pass_the_default() -> None:
    for mrn in ("12345", "MRN 0001", "Doe^Jane"):
        assert problem(ehr_patient_ref(b"k" * 16, mrn, "HOSP")) is None
    for rec in generator("visits", seed=1, malformed_share=0).records(200):
        result = decode_visit(rec.value)
        assert isinstance(result, TherapyVisitCompleted)
    for rec in generator("episodes", seed=1, malformed_share=0).records(200):
        assert isinstance(decode_visit(rec.value), TherapyVisitCompleted)


@pytest.mark.parametrize(
    ("text", "message"),
    [("[a-", "not a valid regular expression"), (".*", "matches an empty reference")],
)
def test_unusable_patterns_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_pattern(text)
    with pytest.raises(ValidationError, match=message):
        Settings.from_env({"TC_PATIENT_REF_PATTERN": text})


def test_a_bad_pattern_stops_the_worker_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TC_PATIENT_REF_PATTERN", "[a-")
    with pytest.raises(SystemExit) as stop:
        settings_from_env_or_exit()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid setting TC_PATIENT_REF_PATTERN" in err
    assert "not a valid regular expression" in err


def test_a_pattern_refusing_the_ehr_references_is_refused_with_the_ehr_path_on() -> None:
    env = {"TC_EHR_PATIENT_KEY": "k" * 16, "TC_PATIENT_REF_PATTERN": r"MRN-[0-9]+"}
    with pytest.raises(ValidationError, match="refuses the EHR path's own patient_ref"):
        Settings.from_env(env)
    Settings.from_env({**env, "TC_PATIENT_REF_PATTERN": r"P-[0-9a-f]{20}"})


def test_the_worker_dead_letters_and_counts_by_problem_without_the_value() -> None:
    metrics = Metrics()
    p = VisitProcessor(Settings.from_env({}), metrics)
    for ref in (LEAK, "Jane Doe", "Jöne", "P-88f1"):
        value = visit(ref)
        guarded(p, Record("in", 0, 1, ref.encode(), value, None), scratch())
    text = generate_latest(metrics.registry).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("therapy_compliance_patient_ref_")]
    assert sorted(lines) == [
        'therapy_compliance_patient_ref_rejections_total{reason="charset"} 1.0',
        'therapy_compliance_patient_ref_rejections_total{reason="length"} 0.0',
        'therapy_compliance_patient_ref_rejections_total{reason="pattern"} 0.0',
        'therapy_compliance_patient_ref_rejections_total{reason="space"} 2.0',
        'therapy_compliance_patient_ref_rejections_total{reason="type"} 0.0',
    ]
    assert "Jane" not in text and "1960" not in text
    assert 'therapy_compliance_dead_letters_total{reason="schema_violation"} 3.0' in text
    assert 'therapy_compliance_visits_processed_total{status="clean"} 1.0' in text


def test_the_worker_applies_the_configured_pattern() -> None:
    settings = Settings.from_env({"TC_PATIENT_REF_PATTERN": r"P-[0-9]+"})
    [out] = guarded(
        VisitProcessor(settings, Metrics()),
        Record("in", 0, 1, b"P-88f1", visit("P-88f1"), None),
        scratch(),
    )
    letter = DeadLetter.model_validate_json(out.value)
    assert letter.reason.value == "schema_violation"
    assert letter.detail.startswith("patient_ref: is outside the accepted alphabet")


def test_audit_counts_refusals_by_problem() -> None:
    data = b"\n".join([visit(LEAK), visit("P-1"), visit("Jöne")]) + b"\n"
    err = io.StringIO()
    summary = run_audit(io.BytesIO(data), io.BytesIO(), err, patient_ref_pattern=re.compile("P-1"))
    assert summary.visits_read == 1 and summary.invalid_lines == 2
    last = orjson.loads(err.getvalue().splitlines()[-1])["summary"]
    assert last["patient_ref_rejections"] == {"charset": 1, "space": 1}


def cli(*args: str, env: dict[str, str] | None = None, data: bytes = b"") -> Any:
    exe = Path(sys.executable).parent / "therapy-compliance"
    return subprocess.run(
        [str(exe), "audit", *args], input=data, capture_output=True, timeout=60, env=env
    )


def test_audit_reads_the_workers_setting_and_the_flag_overrides_it() -> None:
    data = visit("P-88f1") + b"\n"
    base = {"PATH": "/usr/bin:/bin"}
    assert cli("-", env=base, data=data).returncode == 0
    strict = {**base, "TC_PATIENT_REF_PATTERN": r"P-[0-9]+"}
    proc = cli("-", env=strict, data=data)
    assert proc.returncode == 1
    assert orjson.loads(proc.stderr.splitlines()[0])["detail"].startswith("patient_ref:")
    assert cli("-", "--patient-ref-pattern", r"P-[0-9a-f]+", env=strict, data=data).returncode == 0
    proc = cli("-", "--patient-ref-pattern", "[a-", env=base, data=data)
    assert proc.returncode == 2 and b"not a valid regular expression" in proc.stderr
    proc = cli("-", env={**base, "TC_PATIENT_REF_PATTERN": "[a-"}, data=data)
    assert proc.returncode == 2 and b"TC_PATIENT_REF_PATTERN" in proc.stderr
