"""Produce -> a visit's first alert, in 5-second buckets of produce time (benchmark, not a test).

    KAFKA_TEST_BROKERS=127.0.0.1:19092 .venv/bin/python bench/latency_buckets.py [--rate 1000]
        [--seconds 30] [--exe PATH]

bench/e2e.py reports one p50/p95/p99 over its latency run; this shows *when* a worker fell
behind (a stall at one moment, a backlog that grows, or one that stands): bench/e2e.py's
latency run (its live feed: every visit flawed, 5,000 patients, dates over the 60 days before
today in random order; `--exe`: another build's `therapy-compliance`, as its `--before-exe`),
then per bucket of produce time p50/p95/p99/max of the first alert's broker timestamp minus
its visit's. The worker's environment takes E2E_WORKER_ENV as bench/e2e.py's does (e.g.
`TC_NOTICE_RUN_INTERVAL_S=20`: the daily run's first tick inside the window).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e


async def main(rate: float, seconds: float, exe: str | None) -> None:
    pairs: list[tuple[int, int]] = []
    await e2e.latency(rate, seconds, exe, keep=pairs)
    t0 = min(sent for sent, _ in pairs)
    buckets: dict[int, list[int]] = {}
    for sent, alert in pairs:
        buckets.setdefault((sent - t0) // 5000, []).append(alert - sent)
    print(f"{rate:,.0f} visits/s for {seconds:.0f} s; {len(pairs):,} visits' first alerts (ms):")
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
