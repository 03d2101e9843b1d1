"""Produce -> a visit's first alert, in 5-second buckets of produce time (benchmark, not a test).

    KAFKA_TEST_BROKERS=127.0.0.1:19092 .venv/bin/python bench/latency_buckets.py [--rate 1000]
        [--seconds 30] [--exe PATH]

bench/e2e.py reports one p50/p95/p99 over its latency run; this shows *when* a worker fell
behind (a stall at one moment, a backlog that grows, or one that stands): the same live feed
(every visit flawed, 5,000 patients, dates over the 60 days before today in random order) at
`--rate` visits/s for `--seconds`, then per bucket p50/p95/p99/max of the first alert's broker
timestamp minus its visit's. `--exe`: another build's `therapy-compliance` (bench/e2e.py
`--before-exe`). The worker's environment takes E2E_WORKER_ENV as bench/e2e.py's does (e.g.
`TC_NOTICE_RUN_INTERVAL_S=20`: the daily run's first tick inside the window).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e

from synthetic.visits import VisitGenerator
from tests.integration.harness import BROKERS, Topics, Worker, create_topics


async def main(rate: float, seconds: float, exe: str | None) -> None:
    t = Topics.unique("e2e-lat")
    await create_topics(t)
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(t, Path(tmp), f"tc-lat-{uuid.uuid4().hex[:6]}", dict(e2e.EXTRA_ENV))
        if exe:
            worker.command = [exe, "worker"]
        started = time.monotonic()
        worker.start()
        print(f"worker healthy after {time.monotonic() - started:.1f} s")
        gen = VisitGenerator(seed=9, clean_share=0.0, malformed_share=0.0, live=True, patients=5000)
        producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all", linger_ms=0)
        await producer.start()
        total = int(rate * seconds)
        start = time.monotonic()
        sends = []
        for i, rec in enumerate(gen.records(total)):
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
            sends.append(await producer.send(t.visits, rec.value, key=rec.key))
        await asyncio.gather(*sends)
        await producer.stop()
        consumer = AIOKafkaConsumer(
            t.visits,
            t.alerts,
            bootstrap_servers=BROKERS,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        sent: dict[str, int] = {}
        first: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=2000, max_records=10000)
            if not batch and len(sent) >= total:
                break
            for records in batch.values():
                for r in records:
                    event = orjson.loads(r.value)["event_id"]
                    if r.topic == t.visits:
                        sent[event] = r.timestamp
                    else:
                        first[event] = min(r.timestamp, first.get(event, r.timestamp))
        await consumer.stop()
        worker.stop()
    t0 = min(sent.values())
    buckets: dict[int, list[int]] = {}
    for event, ts in first.items():
        if event in sent:
            buckets.setdefault((sent[event] - t0) // 5000, []).append(ts - sent[event])
    print(f"{rate:,.0f} visits/s for {seconds:.0f} s; {len(first):,} visits' first alerts (ms):")
    for k in sorted(buckets):
        v = sorted(buckets[k])
        n = len(v)
        print(
            f"{k * 5:>3}-{k * 5 + 5}s n={n} p50={v[n // 2]} p95={v[int(n * 0.95)]} "
            f"p99={v[int(n * 0.99)]} max={v[-1]}"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--exe", default=None)
    args = ap.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.exe))
