"""The README's run command works: `ops/demo` (and `ops/demo --hl7`) against the real local broker
shows alerts and the metrics summary (docs that run)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.harness import BROKERS, Topics, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["episodes", "visits"])
def test_ops_demo_end_to_end(tmp_path: Path, mode: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    env.update(Topics.unique("demo").env())  # only this run's visits on its input topic
    env.update(
        {
            "TC_BROKERS": BROKERS,
            "TC_WEB_PORT": str(free_port()),
            "TC_APP_ID": f"tc-demo-{free_port()}",
            "TC_DATA_DIR": str(tmp_path / "data"),
        }
    )
    proc = subprocess.run(
        [str(ROOT / "ops/demo"), "--mode", mode, "--count", "300", "--rate", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "== worker ready: metrics http://127.0.0.1:" in out
    assert "ERROR   V-" in out or "WARNING V-" in out  # alerts, formatted for a biller
    assert "therapy_compliance_visits_processed_total" in out  # the summary from /metrics
    summary = [line for line in out.splitlines() if "visits_processed_total" in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in summary) >= 300
    # A newcomer's first screen: every alert the feed intended, and no other (issue 18).
    assert "alerts by rule: intended by the feed" in out
    assert "<- differs" not in out, out[out.index("alerts by rule") :]


@pytest.mark.timeout(300)
def test_ops_demo_hl7_end_to_end(tmp_path: Path) -> None:
    """`ops/demo --hl7`: gateway, MLLP sender, the worker's join, alerts and the summary; every
    message AA'd and every visit the sender expects emitted by the join."""
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    env.update(Topics.unique("demo-hl7").env())
    env.update(
        {
            "TC_BROKERS": BROKERS,
            "TC_WEB_PORT": str(free_port()),
            "TC_MLLP_PORT": str(free_port()),
            "TC_MLLP_WEB_PORT": str(free_port()),
            "TC_APP_ID": f"tc-demo-hl7-{tag}",
            "TC_DATA_DIR": str(tmp_path / "data"),
            "TC_JOIN_WAIT_S": "4",
            "TC_TOPIC_HL7_INBOUND": f"t.demo-hl7-{tag}.hl7",
            "TC_TOPIC_FHIR_INBOUND": f"t.demo-hl7-{tag}.fhir",
            "TC_TOPIC_EHR_PARTS": f"t.demo-hl7-{tag}.parts",
            "TC_TOPIC_EHR_DEADLETTER": f"t.demo-hl7-{tag}.ehrdl",
        }
    )
    proc = subprocess.run(
        [str(ROOT / "ops/demo"), "--hl7", "--count", "60", "--seed", "321"],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "== gateway ready: metrics http://127.0.0.1:" in out
    sent = re.search(r"(\d+) messages sent to 127\.0\.0\.1:\d+", out)
    assert sent, out[-3000:]
    # Every message durable in Kafka (the demo profile maps the demo's commercial payers).
    assert f"ACKs: AA {sent.group(1)} (durable in Kafka), AE 0 " in out
    joined = re.search(
        r"visits joined (\d+) complete, (\d+) partial \(expected (\d+) and (\d+)\)", out
    )
    assert joined, out[-3000:]
    complete, partial, want_complete, want_partial = map(int, joined.groups())
    assert (complete, partial) == (want_complete, want_partial) and complete >= 50
    assert partial > 0  # visits whose note never came: emitted after TC_JOIN_WAIT_S
    assert "DOCUMENTATION_NOT_RECEIVED" in out  # their alert, as tail-alerts prints it
    assert re.search(
        r"^(ERROR  |WARNING) SYNCLINIC:SV321\d{7} ", out, re.M
    )  # alerts of joined visits
    assert re.search(r"alerts in all: [1-9]", out)
    assert "alerts by rule: intended by the feed" in out
    assert "<- differs" not in out, out[out.index("alerts by rule") :]
