"""`demo-feed`: synthetic visits into the input topic, and the alerts they are meant to raise."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from typing import TextIO

from aiokafka import AIOKafkaProducer

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
