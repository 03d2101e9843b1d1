"""`demo-feed` (synthetic visits into the input topic) and `tail-alerts` (alerts, readable)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runtime.settings import Settings
from runtime.topics import ensure_topics
from synthetic.visits import expected_rules, generator


async def demo_feed(
    settings: Settings,
    rate: float,
    count: int,
    seed: int,
    malformed_share: float,
    mode: str = "visits",
    out: TextIO = sys.stderr,
) -> Counter[str]:
    """Produce `count` visits at about `rate` per second (0 = as fast as possible), live (dates
    ending today). Returns the intended mix; also prints the alerts it intends, by rule (one
    per visit and rule: ops/demo compares them with the worker's)."""
    if settings.create_topics:
        await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_request_size=settings.deadletter_max_bytes,
        **settings.aiokafka_security(),
    )
    await producer.start()
    intents: Counter[str] = Counter()
    intended: Counter[str] = Counter()
    gen = generator(mode, seed=seed, malformed_share=malformed_share, live=True)
    started = time.monotonic()
    last_report = started
    try:
        pending = []
        for i, rec in enumerate(gen.records(count), start=1):
            pending.append(await producer.send(settings.topic_visits, rec.value, key=rec.key))
            intents[rec.intent.split(":")[0]] += 1
            intended.update(expected_rules(mode, rec.intent))
            if rate > 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            now = time.monotonic()
            if now - last_report >= 5:
                last_report = now
                out.write(f"demo-feed: {i}/{count} visits sent ({i / (now - started):.0f}/s)\n")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    out.write(
        f"demo-feed: sent {count} records to {settings.topic_visits} in {elapsed:.1f}s; "
        f"intended mix: {dict(sorted(intents.items()))}\n"
        f"demo-feed: intended alerts by rule: {rule_counts(intended)}\n"
    )
    return intents


def rule_counts(counts: Counter[str]) -> str:
    """`RULE=N RULE=N ...` by rule id, or `none` (read by ops/demo)."""
    return " ".join(f"{rule}={n}" for rule, n in sorted(counts.items())) or "none"


SEVERITY_MARK = {"error": "ERROR  ", "warning": "WARNING", "info": "INFO   "}


def format_alert(alert: dict[str, object]) -> str:
    """One line a biller can read: severity, visit, date, payer, rule, codes, message."""
    cpt = alert.get("cpt") or "visit"
    return (
        f"{SEVERITY_MARK.get(str(alert.get('severity')), str(alert.get('severity')))} "
        f"{alert.get('visit_id')}  DOS {alert.get('date_of_service')}  "
        f"{alert.get('payer_id')}  {alert.get('rule_id')} [{cpt}]: {alert.get('message')}"
    )


async def tail_alerts(
    settings: Settings,
    from_beginning: bool,
    as_json: bool,
    limit: int | None,
    out: TextIO = sys.stdout,
) -> int:
    consumer = AIOKafkaConsumer(
        settings.topic_alerts,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **settings.aiokafka_security(),
    )
    await consumer.start()
    shown = 0
    try:
        async for msg in consumer:
            if msg.value is None:
                continue
            if as_json:
                out.write(msg.value.decode() + "\n")
            else:
                out.write(format_alert(orjson.loads(msg.value)) + "\n")
            out.flush()
            shown += 1
            if limit is not None and shown >= limit:
                break
    finally:
        await consumer.stop()
    return shown
