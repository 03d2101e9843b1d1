"""A real Prometheus server (Debian package `prometheus`, installed by ops/test) scrapes a running
worker; its HTTP API must show the service's series with the values of a known input, and the
project's alert rules must load and evaluate without errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.factories import raw, timed_visit
from tests.integration.harness import (
    Topics,
    Worker,
    consume,
    create_topics,
    free_port,
    produce,
)
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def values(port: int, promql: str, label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): float(s["value"][1]) for s in query(port, promql)}


def wait_for(
    port: int, promql: str, label: str, want: dict[str, float], timeout: float = 60
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    got: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            got = values(port, promql, label)
        except OSError:
            got = {}
        if got == want:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{promql}: got {got}, want {want}")


@pytest.mark.asyncio
async def test_prometheus_scrapes_the_worker(make_worker: Any, tmp_path: Path) -> None:
    exe = require_tool("prometheus", "prometheus")
    t = Topics.unique("prom")
    worker: Worker = make_worker(t)
    await create_topics(t)
    worker.start()
    port = free_port()
    rules = tmp_path / "rules.yml"
    shutil.copy(ROOT / "ops/prometheus/rules.yml", rules)
    (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{rules}]
scrape_configs:
  - job_name: therapy-compliance
    static_configs: [{{targets: ["127.0.0.1:{worker.port}"]}}]
""")
    log = (tmp_path / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [
            exe,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        # Known input: 6 clean visits, 4 over-billed (TIMED_UNITS_EXCEED_MINUTES), 3 bad records.
        records = []
        for i in range(10):
            data = timed_visit(("97110", 3 if i < 4 else 2, 33), ("97140", 1, 7))
            data.update(event_id=f"prom-{i}", visit_id=f"V-prom-{i}", patient_ref="P-prom")
            records.append((b"P-prom", raw(data)))
        records += [
            (b"P-prom", b"not json"),
            (b"P-prom", b"[]"),
            (b"P-prom", raw({"schema_version": 7})),
        ]
        await produce(t.visits, records)
        await consume([t.checked, t.deadletter], until=13, timeout=60)
        job = 'job="therapy-compliance"'
        wait_for(port, f"up{{{job}}}", "job", {"therapy-compliance": 1.0})
        wait_for(
            port,
            f"therapy_compliance_visits_processed_total{{{job}}}",
            "status",
            {"clean": 6.0, "flagged": 4.0, "rejected": 3.0},
        )
        got = values(port, f"therapy_compliance_alerts_total{{{job}}} > 0", "rule_id")
        assert got == {"TIMED_UNITS_EXCEED_MINUTES": 4.0}
        wait_for(
            port,
            f"therapy_compliance_dead_letters_total{{{job}}} > 0",
            "reason",
            {"invalid_json": 1.0, "schema_violation": 1.0, "unsupported_version": 1.0},
        )
        wait_for(port, f"sum(therapy_compliance_assigned_partitions{{{job}}})", "", {"": 4.0})
        count = values(port, f"therapy_compliance_processing_seconds_count{{{job}}}", "job")
        assert count == {"therapy-compliance": 13.0}
        # The project's alert rules load and evaluate cleanly against the real series.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as r:
            groups = json.loads(r.read())["data"]["groups"]
        rules_seen = [rule for g in groups for rule in g["rules"]]
        assert len(rules_seen) == (ROOT / "ops/prometheus/rules.yml").read_text().count("- alert:")
        deadline = time.monotonic() + 20
        while any(r.get("health") != "ok" for r in rules_seen) and time.monotonic() < deadline:
            time.sleep(1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as r:
                rules_seen = [x for g in json.loads(r.read())["data"]["groups"] for x in g["rules"]]
        assert all(r["health"] == "ok" for r in rules_seen), rules_seen
    finally:
        prom.terminate()
        prom.wait(30)
        log.close()
