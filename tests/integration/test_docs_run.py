"""The README's run command works: `ops/demo` against the real local broker shows alerts and the
metrics summary (docs that run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import BROKERS, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_ops_demo_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    env.update(
        {
            "TC_BROKERS": BROKERS,
            "TC_WEB_PORT": str(free_port()),
            "TC_APP_ID": f"tc-demo-{free_port()}",
            "TC_DATA_DIR": str(tmp_path / "data"),
        }
    )
    proc = subprocess.run(
        [str(ROOT / "ops/demo"), "--count", "300", "--rate", "0"],
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
