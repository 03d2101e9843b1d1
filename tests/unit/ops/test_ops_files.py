"""Operations as code: the dashboard, alert rules, compose file and Dockerfile stay consistent
with what the worker really exports and with the project's declared dependencies."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import tomllib
from pathlib import Path

from prometheus_client import generate_latest

from runtime.settings import GatewaySettings
from streams.metrics import Metrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
METRIC = re.compile(r"\btherapy_compliance_[a-z0-9_]+\b")


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
        "due this week",
        "notices published",
    ):
        assert topic in titles


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    dash = json.loads((ROOT / "ops/grafana/dashboards/therapy-compliance.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], int] = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, (p["id"], taken[(x, y)])
                taken[(x, y)] = p["id"]


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


def test_dockerfile_copies_every_package_the_project_installs() -> None:
    """`pip install .` in the image finds only the packages copied into it: one missing (ehr/
    was, once) builds an image whose worker and gateway fail at import."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    text = (ROOT / "Dockerfile").read_text()
    for pattern in include:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} {package}$", text, re.M), package


#: The variables docker-compose.yml requires (no default), with placeholder values.
REQUIRED = {"GF_ADMIN_PASSWORD": "placeholder-for-config"}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = require_tool("docker-compose", "docker-compose")
    with tempfile.TemporaryDirectory() as tmp:
        # Nothing from the caller's environment (no TC_EHR_PATIENT_KEY) and an empty env file
        # instead of the checkout's .env, whose values would hide a missing variable.
        empty = Path(tmp) / "empty.env"
        empty.touch()
        return subprocess.run(
            [exe, "--env-file", str(empty), "-f", str(ROOT / "docker-compose.yml"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", **(env or {})},
        )


def test_compose_file_is_valid() -> None:
    for args in (["config", "-q"], ["--profile", "ehr", "config", "-q"]):
        proc = compose(*args, env=REQUIRED)
        assert proc.returncode == 0, proc.stderr
        assert "is not set" not in proc.stderr  # no variable interpolated from nowhere


def test_compose_refuses_to_run_grafana_without_an_admin_password() -> None:
    """Grafana's port is published: its admin password comes from GF_ADMIN_PASSWORD, with no
    default (admin/admin was one), so compose stops and says which variable to set."""
    for env in ({}, {"GF_ADMIN_PASSWORD": ""}):
        proc = compose("config", "-q", env=env)
        assert proc.returncode != 0
        assert "set GF_ADMIN_PASSWORD" in proc.stderr, proc.stderr
    proc = compose("config", env={"GF_ADMIN_PASSWORD": "from-the-environment"})
    assert proc.returncode == 0, proc.stderr
    assert "GF_SECURITY_ADMIN_PASSWORD: from-the-environment" in proc.stdout
    assert "GF_SECURITY_ADMIN_PASSWORD: admin" not in (ROOT / "docker-compose.yml").read_text()


def compose_service(name: str) -> str:
    """One service's block of docker-compose.yml, as text (keys indented by four spaces)."""
    text = (ROOT / "docker-compose.yml").read_text()
    found = re.search(rf"^  {re.escape(name)}:\n((?:(?:    .*)?\n)+)", text, re.M)
    assert found, name
    return found.group(1)


def test_compose_gateway_is_the_worker_image_on_the_published_ports() -> None:
    worker, gateway = compose_service("worker"), compose_service("mllp-gateway")
    image = re.search(r"^    image: (\S+)$", worker, re.M)
    assert image and f"    image: {image.group(1)}\n" in gateway
    assert 'command: ["mllp-gateway"]' in gateway
    # Only with `--profile ehr`: a plain `docker compose up` has no patient key, and a gateway
    # without one exits 2 (and would be restarted forever).
    assert 'profiles: ["ehr"]' in gateway
    assert "<<: *worker-env" in gateway  # the same brokers as the worker
    assert re.search(r"depends_on:\n\s+kafka:\n\s+condition: service_healthy", gateway)
    defaults = GatewaySettings()
    assert f'"{defaults.mllp_port}:{defaults.mllp_port}"' in gateway
    assert f'"{defaults.mllp_web_port}:{defaults.mllp_web_port}"' in gateway
    assert "TC_MLLP_HOST: 0.0.0.0" in gateway  # 127.0.0.1 in a container reaches nobody
    assert f"127.0.0.1:{defaults.mllp_web_port}/health" in gateway  # its own health check
    # Prometheus scrapes it by this service name (ops/prometheus/prometheus.yml).
    prometheus = (ROOT / "ops/prometheus/prometheus.yml").read_text()
    assert f'"mllp-gateway:{defaults.mllp_web_port}"' in prometheus


def test_compose_never_holds_the_patient_key() -> None:
    """TC_EHR_PATIENT_KEY is a secret: the worker and the gateway get it passed through from the
    environment of docker compose (an empty value), never as a literal in the file."""
    text = (ROOT / "docker-compose.yml").read_text()
    values = re.findall(r"^ +TC_EHR_PATIENT_KEY:(.*)$", text, re.M)
    assert len(values) == 2, values
    assert all(v.split("#", 1)[0].strip() == "" for v in values), values
    assert "TC_EHR_PATIENT_KEY:" in compose_service("worker")
    assert "TC_EHR_PATIENT_KEY:" in compose_service("mllp-gateway")


def test_compose_runs_the_kafka_version_of_the_local_broker() -> None:
    """docker-compose.yml and ops/kafka/local-kafka (tests, demo) run the same Apache Kafka."""
    version = (ROOT / "ops/kafka/VERSION").read_text().strip()
    images = re.findall(
        r"^\s*image:\s*apache/kafka:(\S+)", (ROOT / "docker-compose.yml").read_text(), re.M
    )
    assert images == [version]
