"""End-to-end benchmark on the local broker (not a test). Prints one table:

- baseline: a plain aiokafka consume -> produce passthrough of the same records (no validation,
  no rules), same broker, same topic configuration (4 partitions);
- service: the real worker (`therapy-compliance worker`) on the same records (synthetic mix with
  flawed and malformed visits), from its first output record to its last (Kafka CreateTime of
  the outputs, so start-up is not counted);
- their ratio; p50/p95/p99 produce -> alert latency at a fixed offered load (each visit's
  first alert: its own judgement; also after the first 5 s); worker peak RSS;
- with --before-exe, the same for another build's worker, run right after this build's.

    ops/kafka/local-kafka start
    KAFKA_TEST_BROKERS=127.0.0.1:19092 .venv/bin/python bench/e2e.py [--visits 200000] \
        [--repeat 3] [--rate 1000] [--seconds 60] [--generator visits|episodes]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from synthetic.visits import EpisodeGenerator, VisitGenerator
from tests.integration.harness import BROKERS, Topics, Worker, create_topics, produce

EXTRA_ENV: dict[str, str] = {
    "TC_LOG_LEVEL": "warning",
    **dict(kv.split("=", 1) for kv in os.environ.get("E2E_WORKER_ENV", "").split() if kv),
}


def reader(*topics: str) -> AIOKafkaConsumer:
    """A consumer without a group reading from the earliest offsets."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=BROKERS,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def output_span(topics: list[str], expected: int, timeout: float = 900) -> tuple[int, float]:
    """Count records on `topics` until `expected` arrived; return (count, seconds between the
    first and last record's CreateTime)."""
    consumer = reader(*topics)
    await consumer.start()
    n, first, last = 0, None, None
    deadline = time.monotonic() + timeout
    try:
        while n < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for recs in batch.values():
                for r in recs:
                    n += 1
                    first = r.timestamp if first is None else min(first, r.timestamp)
                    last = r.timestamp if last is None else max(last, r.timestamp)
    finally:
        await consumer.stop()
    return n, ((last or 0) - (first or 0)) / 1000


async def baseline(records: list[tuple[bytes, bytes]]) -> float:
    """Plain aiokafka passthrough: consume in batches, produce each value, wait for the acks,
    commit - the same delivery discipline as the worker, with no work in between."""
    t = Topics.unique("e2e-base")
    await create_topics(t)
    await produce(t.visits, records)
    consumer = AIOKafkaConsumer(
        t.visits,
        bootstrap_servers=BROKERS,
        group_id=f"base-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < len(records):
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            futures = []
            for recs in batch.values():
                for r in recs:
                    futures.append(await producer.send(t.checked, r.value, key=r.key))
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
            done += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()
    n, span = await output_span([t.checked], len(records))
    return n / span


async def changelog_bytes(topic: str) -> tuple[int, int]:
    """(records, bytes of keys and values) the worker wrote to a changelog topic: what it sent,
    read back before compaction could shrink it."""
    consumer = reader()
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # every topic's partitions
        parts = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        n = size = 0
        done = {tp for tp, end in ends.items() if end == 0}
        deadline = time.monotonic() + 120
        while len(done) < len(ends) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, recs in batch.items():
                for r in recs:
                    n += 1
                    size += len(r.key or b"") + len(r.value or b"")
                    if r.offset >= ends[tp] - 1:
                        done.add(tp)
        return n, size
    finally:
        await consumer.stop()


async def service(
    records: list[tuple[bytes, bytes]], accepted: int, exe: str | None = None
) -> tuple[float, float]:
    """`exe`: another build's `therapy-compliance` (a checkout of the commit before a change,
    with its own venv): the same records through it, on topics it knows (no status topic)."""
    t = Topics.unique("e2e-svc")
    if exe is not None:
        t = Topics(t.visits, t.alerts, t.checked, t.deadletter)
    await create_topics(t)
    await produce(t.visits, records)
    with tempfile.TemporaryDirectory() as tmp:
        app_id = f"tc-e2e-{uuid.uuid4().hex[:6]}"
        worker = Worker(t, Path(tmp), app_id, dict(EXTRA_ENV))
        if exe is not None:
            worker.command = [exe, "worker"]
        worker.start(wait_healthy=False)
        assert worker.proc is not None
        peak = 0.0
        task = asyncio.create_task(output_span([t.checked, t.deadletter], len(records)))
        while not task.done():
            peak = max(peak, worker.rss_mb())
            await asyncio.sleep(0.2)
        n, span = task.result()
        worker.stop()
    assert n >= len(records), f"only {n} of {len(records)} outputs"
    written, size = await changelog_bytes(f"{app_id}-patient-history-changelog")
    print(
        f"  patient-history changelog: {written:,} records, {size:,} bytes, "
        f"{size / len(records):,.0f} bytes per visit",
        flush=True,
    )
    return len(records) / span, peak


async def latency(
    rate: float,
    seconds: float,
    exe: str | None = None,
    keep: list[tuple[int, int]] | None = None,
) -> tuple[list[float], list[float], int, float]:
    """Produce `rate` visits/s for `seconds` to a fresh worker; return the produce -> alert
    latencies of every visit's own judgement (its first alert: a re-judgement publishes an
    earlier visit's alerts again when a later visit changes its verdict, by design, and those
    measure the later visit's arrival, not this pipeline), the same for the visits produced
    after the first 5 s (the worker warm), the number of alerts after a visit's first (its other
    findings, re-judgements), and the worker's peak RSS. `exe`: another build, as for `service`.
    `keep`: filled with each visit's (produce, first alert) broker timestamps, ms
    (bench/latency_buckets.py)."""
    t = Topics.unique("e2e-lat")
    if exe is not None:
        t = Topics(t.visits, t.alerts, t.checked, t.deadletter)
    await create_topics(t)
    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(t, Path(tmp), f"tc-lat-{uuid.uuid4().hex[:6]}", dict(EXTRA_ENV))
        if exe is not None:
            worker.command = [exe, "worker"]
        worker.start()
        assert worker.proc is not None
        gen = VisitGenerator(seed=9, clean_share=0.0, malformed_share=0.0, live=True, patients=5000)
        producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all", linger_ms=0)
        await producer.start()
        total = int(rate * seconds)
        start = time.monotonic()
        peak = 0.0
        futures = []
        for i, rec in enumerate(gen.records(total)):
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
            futures.append(await producer.send(t.visits, rec.value, key=rec.key))
            if i % 200 == 0:
                peak = max(peak, worker.rss_mb())
        await asyncio.gather(*futures)
        await producer.stop()
        consumer = reader(t.visits, t.alerts)
        await consumer.start()
        sent_at: dict[str, int] = {}
        first_alert: dict[str, int] = {}
        alerts = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=2000, max_records=10_000)
            if not batch and len(sent_at) >= total:
                break
            for recs in batch.values():
                for r in recs:
                    event = orjson.loads(r.value)["event_id"]
                    if r.topic == t.visits:
                        sent_at[event] = r.timestamp
                    else:
                        alerts += 1
                        first_alert[event] = min(r.timestamp, first_alert.get(event, r.timestamp))
        await consumer.stop()
        worker.stop()
    if keep is not None:
        keep.extend((sent_at[ev], ts) for ev, ts in first_alert.items() if ev in sent_at)
    begin = min(sent_at.values(), default=0)
    lat = [(ts - sent_at[ev]) / 1000 for ev, ts in first_alert.items() if ev in sent_at]
    warm = [
        (ts - sent_at[ev]) / 1000
        for ev, ts in first_alert.items()
        if ev in sent_at and sent_at[ev] - begin >= 5000
    ]
    return lat, warm, alerts - len(first_alert), peak


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--skip-latency", action="store_true")
    # episodes: patients followed through episodes of care (histories of ~4-14 KB, as a
    # clinic's Medicare patients); visits (default): independent visits of 5,000 patients
    # (~1.2 KB histories).
    ap.add_argument("--generator", choices=("visits", "episodes"), default="visits")
    # The build before a change (its checkout's .venv/bin/therapy-compliance): each run then
    # also runs the same records through it, right after this build's run.
    ap.add_argument("--before-exe", default=None)
    args = ap.parse_args()
    gen = (
        VisitGenerator(seed=42, patients=5000)
        if args.generator == "visits"
        else EpisodeGenerator(seed=42, patients=500)
    )
    records = [(r.key, r.value) for r in gen.records(args.visits)]
    base_runs, svc_runs, rss_runs, before_runs = [], [], [], []
    for i in range(args.repeat):
        base_runs.append(await baseline(records))
        svc, rss = await service(records, args.visits)
        svc_runs.append(svc)
        rss_runs.append(rss)
        print(
            f"run {i + 1}: baseline {base_runs[-1]:,.0f}/s, service {svc:,.0f}/s, "
            f"peak RSS {rss:.0f} MB",
            flush=True,
        )
        if args.before_exe:
            before, before_rss = await service(records, args.visits, args.before_exe)
            before_runs.append(before)
            print(
                f"run {i + 1}: before ({args.before_exe}) {before:,.0f}/s, "
                f"peak RSS {before_rss:.0f} MB",
                flush=True,
            )
    base, svc = statistics.median(base_runs), statistics.median(svc_runs)
    print()
    print(
        f"machine: {os.cpu_count()} CPU {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; broker {BROKERS}; {args.visits} visits ({args.generator}), "
        f"median of {args.repeat}"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| baseline aiokafka passthrough | {base:,.0f} records/s |")
    print(f"| service (worker) | {svc:,.0f} visits/s |")
    print(f"| ratio service / baseline | {svc / base:.1%} |")
    if before_runs:
        before = statistics.median(before_runs)
        print(f"| service before (--before-exe) | {before:,.0f} visits/s |")
        print(f"| ratio service / before | {svc / before:.1%} |")
    print(f"| worker peak RSS (throughput runs) | {max(rss_runs):.0f} MB |")
    if not args.skip_latency:
        for build, exe in (("", None), (" before", args.before_exe)):
            if build and exe is None:
                continue
            lat, warm, rejudged, peak = await latency(args.rate, args.seconds, exe)
            for label, values in (("", lat), (", after the first 5 s", warm)):
                print(
                    f"| service{build}: produce->alert latency at {args.rate:,.0f} visits/s for "
                    f"{args.seconds:.0f} s{label} ({len(values)} visits' first alerts) | p50 "
                    f"{pct(values, 50) * 1000:.0f} ms, p95 {pct(values, 95) * 1000:.0f} ms, "
                    f"p99 {pct(values, 99) * 1000:.0f} ms |"
                )
            print(
                f"| service{build}: alerts after a visit's first (its other findings, re-judgements) | {rejudged} |"
            )
            print(f"| service{build}: worker peak RSS (latency run) | {peak:.0f} MB |")


if __name__ == "__main__":
    asyncio.run(main())
