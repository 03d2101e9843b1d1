"""Back-pressure memory bench (not a test): the worker's memory while an output topic refuses
writes, and while it drains afterwards. Asserts a ceiling on peak RSS (exit 1 when exceeded).

    KAFKA_TEST_BROKERS=127.0.0.1:19092 .venv/bin/python bench/backpressure.py \
        [--visits 200000] [--stall-seconds 30] [--ceiling-mb 300]

Needs the local broker (ops/kafka/local-kafka start). Figures go to stdout; quote them in
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from synthetic.visits import VisitGenerator
from tests.integration.harness import (
    BROKERS,
    Topics,
    Worker,
    create_topics,
    produce,
)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=200_000)
    ap.add_argument("--stall-seconds", type=float, default=30)
    ap.add_argument("--ceiling-mb", type=float, default=300)
    args = ap.parse_args()

    t = Topics.unique("bp-bench")
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS)
    await admin.start()
    await admin.create_topics([NewTopic(t.alerts, 4, 1, topic_configs={"max.message.bytes": "64"})])
    await create_topics(t)
    gen = VisitGenerator(seed=77)
    started = time.monotonic()
    await produce(t.visits, ((r.key, r.value) for r in gen.records(args.visits)))
    print(f"produced {args.visits} visits in {time.monotonic() - started:.1f}s")

    with tempfile.TemporaryDirectory() as tmp:
        worker = Worker(t, Path(tmp), f"tc-bp-{uuid.uuid4().hex[:6]}", {"TC_LOG_LEVEL": "warning"})
        worker.start()
        assert worker.proc is not None
        peak_stall = 0.0
        end = time.monotonic() + args.stall_seconds
        while time.monotonic() < end:
            peak_stall = max(peak_stall, worker.rss_mb())
            await asyncio.sleep(0.5)
        held = worker.processed()
        print(
            f"alert topic refusing writes for {args.stall_seconds:.0f}s: processed {held} of "
            f"{args.visits} (one batch is held), peak RSS {peak_stall:.0f} MB"
        )
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, t.alerts, configs={"max.message.bytes": "1048588"}
                )
            ]
        )
        drain_start = time.monotonic()
        peak_drain = 0.0
        while worker.processed() < args.visits and time.monotonic() - drain_start < 600:
            peak_drain = max(peak_drain, worker.rss_mb())
            await asyncio.sleep(0.5)
        drained = time.monotonic() - drain_start
        n = worker.processed()
        print(
            f"after the fix: processed {n} in {drained:.1f}s ({n / drained:,.0f} visits/s), "
            f"peak RSS {peak_drain:.0f} MB"
        )
        worker.stop()
    await admin.close()
    peak = max(peak_stall, peak_drain)
    verdict = "OK" if peak <= args.ceiling_mb else "EXCEEDED"
    print(f"peak RSS {peak:.0f} MB; ceiling {args.ceiling_mb:.0f} MB: {verdict}")
    return 0 if peak <= args.ceiling_mb and n >= args.visits else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
