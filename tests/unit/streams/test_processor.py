"""The worker's record handling without a broker: VisitProcessor (pure shell logic) and the
Faust agent through `agent.test_context()`."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

from compliance import Engine
from runtime.settings import Settings
from schemas import ComplianceAlert, DeadLetter, VisitChecked
from streams.metrics import Metrics
from streams.processor import Output, Record, VisitProcessor, guarded, scratch
from tests.factories import raw, timed_visit

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({})


def rec(value: bytes | None, key: bytes | None = b"P-88f1", offset: int = 7) -> Record:
    return Record("therapy.visit.completed.v1", 2, offset, key, value, 1_772_000_000_000)


def processor(metrics: Metrics | None = None) -> VisitProcessor:
    return VisitProcessor(SETTINGS, metrics or Metrics(), clock=lambda: NOW)


def test_flagged_visit_gives_alerts_then_one_checked() -> None:
    out = guarded(processor(), rec(raw(timed_visit(("97110", 3, 33), ("97140", 1, 7)))), scratch())
    assert [o.topic for o in out] == ["billing.compliance.alert.v1", "therapy.visit.checked.v1"]
    assert all(o.key == b"V-1001" for o in out)
    alert = ComplianceAlert.model_validate_json(out[0].value)
    checked = VisitChecked.model_validate_json(out[1].value)
    assert alert.rule_id == "TIMED_UNITS_EXCEED_MINUTES"
    assert checked.status.value == "flagged" and checked.alert_ids == [alert.alert_id]


def test_clean_visit_gives_only_checked() -> None:
    out = guarded(processor(), rec(raw(timed_visit(("97110", 2, 33), ("97140", 1, 7)))), scratch())
    assert len(out) == 1
    checked = VisitChecked.model_validate_json(out[0].value)
    assert checked.status.value == "clean" and checked.alert_ids == []


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"{oops", b"P-1", "invalid_json"),
        (b'{"schema_version": 9}', b"P-1", "unsupported_version"),
        (b"[]", b"P-1", "schema_violation"),
        (None, b"P-1", "invalid_json"),
        (raw(timed_visit(("97110", 2, 30))), b"", "schema_violation"),
        (raw(timed_visit(("97110", 2, 30))), None, "schema_violation"),
        (raw(timed_visit(("97110", 2, 30))), b"P-other", "schema_violation"),
        (b"{" + b" " * 2_000_000 + b"}", b"P-1", "too_large"),
    ],
)
def test_bad_records_become_one_dead_letter_with_original_bytes(
    value: bytes | None, key: bytes | None, reason: str
) -> None:
    metrics = Metrics()
    [out] = guarded(processor(metrics), rec(value, key), scratch())
    assert out.topic == "therapy.visit.deadletter.v1" and out.key == key
    letter = DeadLetter.model_validate_json(out.value)
    assert letter.reason.value == reason
    assert letter.value_b64 == (base64.b64encode(value).decode() if value is not None else None)
    assert letter.key_b64 == (base64.b64encode(key).decode() if key is not None else None)
    assert (letter.source.topic, letter.source.partition, letter.source.offset) == (
        "therapy.visit.completed.v1",
        2,
        7,
    )
    assert letter.source.timestamp == 1_772_000_000_000
    text = generate_latest(metrics.registry).decode()
    assert f'therapy_compliance_dead_letters_total{{reason="{reason}"}} 1.0' in text
    assert 'therapy_compliance_visits_processed_total{status="rejected"} 1.0' in text


def test_unexpected_exception_is_dead_lettered_not_skipped() -> None:
    class Broken(Engine):
        __slots__ = ()

        def evaluate(self, *_: Any, **__: Any) -> Any:
            raise ZeroDivisionError("patient Jane Marker-Doe")

    p = VisitProcessor(SETTINGS, Metrics(), engine=Broken(), clock=lambda: NOW)
    [out] = guarded(p, rec(raw(timed_visit(("97110", 2, 30)))), scratch())
    letter = DeadLetter.model_validate_json(out.value)
    assert letter.reason.value == "processing_error"
    assert "ZeroDivisionError" in letter.detail and "Marker" not in letter.detail


def test_metrics_count_alerts_by_rule_and_visits_by_status() -> None:
    metrics = Metrics()
    p = processor(metrics)
    guarded(p, rec(raw(timed_visit(("97110", 3, 33), ("97140", 1, 7)))), scratch())
    guarded(p, rec(raw(timed_visit(("97110", 2, 33), ("97140", 1, 7)))), scratch())
    text = generate_latest(metrics.registry).decode()
    assert (
        'therapy_compliance_alerts_total{rule_id="TIMED_UNITS_EXCEED_MINUTES",severity="error"} 1.0'
    ) in text
    assert 'therapy_compliance_visits_processed_total{status="clean"} 1.0' in text
    assert 'therapy_compliance_visits_processed_total{status="flagged"} 1.0' in text
    assert "therapy_compliance_processing_seconds_count 2.0" in text
    assert "V-1001" not in text and "P-88f1" not in text


def test_alerts_are_counted_at_the_severity_they_carry() -> None:
    # Pub. 100-02, Ch. 15, sec. 220.3: a Medicare note with only the total timed minutes gives
    # TIMED_MINUTES_MISSING at `info` (EVENTS.md lists the rule as a warning by default).
    metrics = Metrics()
    data = timed_visit(("97110", 2, 30), ("97140", 1, 10))
    for service in data["services"]:
        service["minutes"] = None
    guarded(processor(metrics), rec(raw(data)), scratch())
    text = generate_latest(metrics.registry).decode()
    line = 'therapy_compliance_alerts_total{rule_id="TIMED_MINUTES_MISSING",severity="info"} 2.0'
    assert line in text
    assert (
        'therapy_compliance_alerts_total{rule_id="TIMED_MINUTES_MISSING",severity="warning"} 0.0'
    ) in text


def test_stray_faust_environment_variables_cannot_change_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # faust reads BROKER_URL, WEB_PORT, ... from the environment by default; our app passes
    # env={} so only TC_* settings count.
    from streams.app import create_app

    monkeypatch.setenv("BROKER_URL", "kafka://evil:9092")
    monkeypatch.setenv("WEB_PORT", "9999")
    monkeypatch.setenv("APP_DATADIR", "/tmp/elsewhere")
    monkeypatch.setenv("PRODUCER_ACKS", "0")
    app = create_app(Settings.from_env({"TC_APP_ID": "tc-env-test", "TC_STORE": "memory"}))
    assert [str(u) for u in app.conf.broker] == ["tckafka://127.0.0.1:19092"]
    assert app.conf.web_port == 6066 and app.conf.producer_acks == -1
    assert "elsewhere" not in str(app.conf.datadir)


@pytest.mark.asyncio
async def test_agent_processes_every_record_through_test_context() -> None:
    from streams.app import create_app

    app = create_app(
        Settings.from_env(
            {"TC_APP_ID": "tc-agent-test", "TC_STORE": "memory", "TC_BATCH_SIZE": "3"}
        )
    )
    pipeline = app.tc_pipeline  # type: ignore[attr-defined]
    sent: list[Output] = []

    async def fake_send(out: Output) -> asyncio.Future[None]:
        sent.append(out)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    pipeline.publisher.send = fake_send
    agent = app.agents["check_visits"]
    good = raw(timed_visit(("97110", 3, 33), ("97140", 1, 7)))
    async with agent.test_context() as ctx:
        for value in [good, b"not json", good, good, b"[]"]:
            await ctx.put(value, key=b"P-88f1", partition=0)
        for _ in range(100):
            if len(sent) >= 10:
                break
            await asyncio.sleep(0.02)
    changelog = [o for o in sent if o.topic == "tc-agent-test-patient-history-changelog"]
    # One changelog record batch per batch that changed a key, co-partitioned: the same event
    # re-delivered at later offsets changes nothing (EVENTS.md), so only the first batch's.
    assert len(changelog) == 1 and {o.partition for o in changelog} == {0}
    topics = [o.topic.split(".")[-2] for o in sent if o not in changelog]
    assert topics.count("alert") == 3 and topics.count("checked") == 3
    assert topics.count("status") == 1  # a re-delivery "publishes no status" (EVENTS.md)
    assert topics.count("deadletter") == 2
    reasons = [orjson.loads(o.value)["reason"] for o in sent if "deadletter" in o.topic]
    assert reasons == ["invalid_json", "schema_violation"]


def test_cached_metric_children_still_count_per_label_values() -> None:
    m = Metrics()
    published = m.status_published_by
    assert published("hold", "visit") is published("hold", "visit")
    published("hold", "visit").inc()
    published("hold", "visit").inc()
    published("ready", "related_visit").inc()
    name = "therapy_compliance_visit_status_published_total"
    count = m.registry.get_sample_value
    assert count(name, {"status": "hold", "cause": "visit"}) == 2
    assert count(name, {"status": "ready", "cause": "related_visit"}) == 1
    assert count(name, {"status": "hold", "cause": "related_visit"}) is None  # never created
