"""The worker on the real local Kafka broker (started by ops/test via ops/kafka/local-kafka)."""

from __future__ import annotations

import base64
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import ComplianceAlert, DeadLetter, VisitChecked
from tests.factories import raw, timed_visit
from tests.integration.harness import Topics, Worker, by_topic, consume, models, produce
from tests.unit.cli.test_audit_cli import EXAMPLES

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Worker, Topics]]:
    topics = Topics.unique("worker")
    worker = Worker(topics, tmp_path_factory.mktemp("worker"), f"tc-{uuid.uuid4().hex[:8]}")
    worker.start()
    yield worker, topics
    assert worker.stop() == 0, worker.tail()


def visit(event: str, patient: str = "P-88f1", **kw: Any) -> dict[str, Any]:
    data = timed_visit(*kw.pop("lines", [("97110", 2, 33), ("97140", 1, 7)]), **kw)
    data.update(event_id=event, visit_id=f"V-{event}", patient_ref=patient)
    return data


@pytest.mark.asyncio
async def test_flagged_visit_gives_its_alerts_and_one_checked(
    shared: tuple[Worker, Topics],
) -> None:
    _, t = shared
    data = visit("flagged-1", lines=[("97110", 3, 33), ("97140", 1, 7)])
    data["services"][1]["modifiers"] = []
    await produce(t.visits, [(b"P-88f1", raw(data))])
    recs = await consume([t.alerts, t.checked], until=3)
    alerts = models(recs, t.alerts, ComplianceAlert)
    [checked] = models(recs, t.checked, VisitChecked)
    assert sorted(a.rule_id for a in alerts) == [
        "THERAPY_MODIFIER_MISSING",
        "TIMED_UNITS_EXCEED_MINUTES",
    ]
    assert all(r.key == b"V-flagged-1" for r in recs)
    assert checked.status.value == "flagged"
    assert sorted(checked.alert_ids) == sorted(a.alert_id for a in alerts)


@pytest.mark.asyncio
async def test_clean_visit_gives_clean_checked_and_no_alert(shared: tuple[Worker, Topics]) -> None:
    _, t = shared
    await produce(t.visits, [(b"P-clean", raw(visit("clean-1", patient="P-clean")))])
    recs = await consume([t.alerts, t.checked], until=4, idle_after=1.0)
    checked = [c for c in by_topic(recs, t.checked) if c["visit_id"] == "V-clean-1"]
    assert len(checked) == 1 and checked[0]["status"] == "clean"
    assert [a for a in by_topic(recs, t.alerts) if a["visit_id"] == "V-clean-1"] == []


BAD = [
    ("invalid_json", b"P-1", b"{not json"),
    ("invalid_json", b"P-1", b"\xff\xfe\xfd"),
    ("schema_violation", b"P-1", b'{"schema_version": 1}'),
    ("schema_violation", b"P-1", raw({**visit("neg"), "total_timed_minutes": -3})),
    ("schema_violation", b"", raw(visit("empty-key"))),
    ("unsupported_version", b"P-1", raw({**visit("v2"), "schema_version": 2})),
    ("too_large", b"P-1", b'{"pad": "' + b"x" * 1_200_000 + b'"}'),
]


@pytest.mark.asyncio
async def test_each_bad_record_is_dead_lettered_with_reason_and_original_bytes(
    shared: tuple[Worker, Topics],
) -> None:
    _, t = shared
    await produce(t.visits, [(key, value) for _, key, value in BAD])
    recs = await consume([t.deadletter], until=len(BAD))
    letters = models(recs, t.deadletter, DeadLetter)
    got = {(letter.reason.value, base64.b64decode(letter.value_b64 or "")) for letter in letters}
    assert got == {(reason, value) for reason, _, value in BAD}
    for letter in letters:
        assert letter.source.topic == t.visits and letter.source.offset >= 0
        assert "xxxxxxxx" not in letter.detail


@pytest.mark.asyncio
async def test_cms_worked_examples_through_kafka(shared: tuple[Worker, Topics]) -> None:
    _, t = shared
    records = []
    for i, (name, data, _) in enumerate(EXAMPLES):
        d = dict(data, event_id=f"kx-{i}", visit_id=f"V-kx-{name}", patient_ref="P-kx")
        records.append((b"P-kx", raw(d)))
    await produce(t.visits, records)
    recs = await consume([t.alerts, t.checked], until=len(EXAMPLES), timeout=60, idle_after=2)
    checked = [c for c in by_topic(recs, t.checked) if c["visit_id"].startswith("V-kx-")]
    assert len(checked) == len(EXAMPLES)
    got: dict[str, list[str]] = {f"V-kx-{n}": [] for n, _, _ in EXAMPLES}
    for a in by_topic(recs, t.alerts):
        if a["visit_id"] in got:
            got[a["visit_id"]].append(a["rule_id"])
    assert got == {f"V-kx-{n}": rules for n, _, rules in EXAMPLES}


@pytest.mark.asyncio
async def test_metrics_endpoint_shows_the_counts(shared: tuple[Worker, Topics]) -> None:
    worker, t = shared
    recs = await consume([t.alerts, t.checked, t.deadletter], until=1, idle_after=1.5)
    n_checked = len(by_topic(recs, t.checked))
    n_dead = len(by_topic(recs, t.deadletter))
    n_alerts = len(by_topic(recs, t.alerts))
    text = worker.metrics()
    samples = _samples(text)
    visits = sum(
        v for k, v in samples.items() if k.startswith("therapy_compliance_visits_processed_total{")
    )
    alerts = sum(v for k, v in samples.items() if k.startswith("therapy_compliance_alerts_total{"))
    assert visits == n_checked + n_dead
    assert alerts == n_alerts
    assert samples['therapy_compliance_dead_letters_total{reason="too_large"}'] == 1
    assert samples["therapy_compliance_assigned_partitions"] == 4
    assert "V-" not in text and "P-88f1" not in text
    status, body = worker.get("/health")
    assert status == 200 and orjson.loads(body)["status"] == "ok"


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.mark.asyncio
async def test_stop_and_restart_loses_nothing_and_duplicates_keep_ids(
    make_worker: Any, tmp_path: Path
) -> None:
    t = Topics.unique("restart")
    worker: Worker = make_worker(t)
    worker.start()
    first = [
        (
            f"P-{i % 37}".encode(),
            raw(
                visit(
                    f"r-{i}",
                    patient=f"P-{i % 37}",
                    lines=[("97110", 3 if i % 3 else 2, 33), ("97140", 1, 7)],
                )
            ),
        )
        for i in range(3000)
    ]
    await produce(t.visits, first[:1500])
    assert worker.stop(signal.SIGTERM) == 0, worker.tail()
    await produce(t.visits, first[1500:])  # produced while the worker is down
    worker.start()
    recs = await consume([t.alerts, t.checked], until=3000 + 2000, timeout=120, idle_after=2)
    checked = by_topic(recs, t.checked)
    assert {c["event_id"] for c in checked} == {f"r-{i}" for i in range(3000)}
    alerts = by_topic(recs, t.alerts)
    flagged = {f"r-{i}" for i in range(3000) if i % 3}
    assert {a["event_id"] for a in alerts} == flagged
    # Re-delivered events (if any) carry the ids already issued for that event and rule.
    ids_by_key: dict[tuple[str, str], set[str]] = {}
    for a in alerts:
        ids_by_key.setdefault((a["event_id"], a["rule_id"]), set()).add(a["alert_id"])
    assert all(len(ids) == 1 for ids in ids_by_key.values())
