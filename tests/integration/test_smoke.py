"""Smoke test: the worker end to end on whichever broker KAFKA_TEST_BROKERS points at. ops/test runs
it with the whole suite on the default broker, then alone (`pytest -m smoke`) on an Apache Kafka
3.9.1 broker, so the worker keeps working with both major versions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from schemas import ComplianceAlert, DeadLetter, VisitChecked
from tests.factories import raw, timed_visit
from tests.integration.harness import Topics, Worker, consume, create_topics, models, produce

pytestmark = [pytest.mark.smoke, pytest.mark.timeout(120)]

FLAGGED = [("97110", 3, 33), ("97140", 1, 7)]  # 3 units for 33 minutes: one unit too many
CLEAN = [("97110", 2, 33), ("97140", 1, 7)]


def visit(n: int, lines: list[tuple[str, int, int]]) -> tuple[bytes, bytes]:
    patient = f"P-smoke-{n % 3}"
    data = timed_visit(*lines)
    data.update(event_id=f"smoke-{n}-{uuid.uuid4().hex[:6]}", visit_id=f"V-smoke-{n}")
    data["patient_ref"] = patient
    return patient.encode(), raw(data)


@pytest.mark.asyncio
async def test_worker_end_to_end(make_worker: Any) -> None:
    t = Topics.unique("smoke")
    await create_topics(t)
    worker: Worker = make_worker(t)
    worker.start()
    visits = [visit(n, FLAGGED if n % 2 else CLEAN) for n in range(6)]
    await produce(t.visits, [*visits, (b"P-smoke-0", b"{not json")])

    def arrived(recs: list[Any]) -> bool:
        count = {topic: sum(r.topic == topic for r in recs) for topic in (t.checked, t.alerts)}
        return count[t.checked] >= 6 and count[t.alerts] >= 3 and len(recs) >= 10

    recs = await consume([t.checked, t.alerts, t.deadletter], until=arrived, idle_after=1.0)

    checked = models(recs, t.checked, VisitChecked)
    assert sorted((c.visit_id, c.status.value) for c in checked) == [
        (f"V-smoke-{n}", "flagged" if n % 2 else "clean") for n in range(6)
    ]
    alerts = models(recs, t.alerts, ComplianceAlert)
    assert sorted((a.visit_id, a.rule_id) for a in alerts) == [
        (f"V-smoke-{n}", "TIMED_UNITS_EXCEED_MINUTES") for n in (1, 3, 5)
    ]
    by_visit = {c.visit_id: c for c in checked}
    for a in alerts:
        assert by_visit[a.visit_id].alert_ids == [a.alert_id]
    [letter] = models(recs, t.deadletter, DeadLetter)
    assert letter.reason.value == "invalid_json" and letter.source.topic == t.visits
    keys = {r.key for r in recs if r.topic != t.deadletter}  # outputs are keyed by visit
    assert keys == {f"V-smoke-{n}".encode() for n in range(6)}
    assert worker.processed() == 7
    assert worker.stop() == 0, worker.tail()  # commits and leaves the group cleanly
