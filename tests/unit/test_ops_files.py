"""Operations as code: the dashboard, alert rules, compose file and Dockerfile stay consistent
with what the worker really exports and with the project's declared dependencies."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client import generate_latest

from streams.metrics import Metrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\btherapy_compliance_[a-z_]+\b")


def exported_series() -> set[str]:
    text = generate_latest(Metrics().registry).decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter":
                names.add(f"{name}_total")
            if kind == "info":
                names.add(f"{name}_info")
    return names


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    dash = json.loads((ROOT / "ops/grafana/dashboards/therapy-compliance.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used and used <= exported_series(), used - exported_series()
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in (
        "visits processed",
        "lag",
        "percentiles",
        "alerts",
        "dead letters",
        "episode alerts",
        "state store",
        "state recovery",
    ):
        assert topic in titles


def test_every_alert_rule_uses_an_exported_metric() -> None:
    text = (ROOT / "ops/prometheus/rules.yml").read_text()
    used = set(METRIC.findall(text))
    assert used and used <= exported_series(), used - exported_series()


def test_dockerfile_installs_only_declared_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    runs = [line for line in text.splitlines() if line.startswith("RUN")]
    assert runs == [next(line for line in runs if "pip install" in line)]
    assert "pip install -c ops/constraints.txt ." in runs[0]
    assert not re.search(r"\b(curl|wget|git clone|apt-get)\b|ADD\s+https?://", text)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim"]


def test_compose_file_is_valid() -> None:
    exe = require_tool("docker-compose", "docker-compose")
    proc = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_runs_the_kafka_version_of_the_local_broker() -> None:
    """docker-compose.yml and ops/kafka/local-kafka (tests, demo) run the same Apache Kafka."""
    version = (ROOT / "ops/kafka/VERSION").read_text().strip()
    images = re.findall(
        r"^\s*image:\s*apache/kafka:(\S+)", (ROOT / "docker-compose.yml").read_text(), re.M
    )
    assert images == [version]
