"""Operations as code for the MLLP gateway: the Prometheus scrape job and alert rules use the
metrics the gateway really exports, and promtool accepts the rules and their unit tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "ops/prometheus"
METRIC = re.compile(r"\btherapy_compliance_mllp_[a-z_]+\b")


def gateway_series() -> set[str]:
    names = set()
    for line in generate_latest(GatewayMetrics().registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter":
                names.add(f"{name}_total")
    return names


def test_gateway_rules_use_exported_metrics_and_are_loaded() -> None:
    used = set(METRIC.findall((PROM / "rules-mllp.yml").read_text()))
    assert used and used <= gateway_series(), used - gateway_series()
    config = (PROM / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules-mllp.yml" in config
    assert "job_name: therapy-compliance-mllp" in config and ":6068" in config
    assert "rules-mllp.yml" in (PROM / "rules.test.yml").read_text()


def test_promtool_accepts_the_rules_and_their_tests() -> None:
    exe = require_tool("promtool", "prometheus")
    for args in (["check", "rules", "rules-mllp.yml"], ["test", "rules", "rules.test.yml"]):
        proc = subprocess.run([exe, *args], cwd=PROM, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
