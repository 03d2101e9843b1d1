"""The check stage's per-record work in process (not a test): streams.processor.VisitProcessor
on a memory store, records in batches of --batch, each batch's state transaction committed
before the next (what the worker does once a batch is durable), without Kafka or faust.

    taskset -c 1 .venv/bin/python bench/processor_bench.py [--visits 20000] [--feed live|visits|episodes]
        [--repeat 3] [--profile N]

Prints CPU microseconds per record (process_time; median of the runs); --profile N prints
cProfile's N costliest functions (cumulative) of one more run. Feeds: `live` is bench/e2e.py's
latency feed (every visit flawed, dates of service around today, 5,000 patients), `visits`
its throughput feed, `episodes` its episode feed. `--late`: the partition's daily run is done
through the feed's last date of service before the run, so every visit dated before it arrives
late (the worker then judges its patient's notice dates after it again, streams/processor.py),
as after the worker's first daily run over bench/e2e.py's latency feed (60 days of dates in
random order).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compliance import Engine
from runtime.settings import Settings
from streams.metrics import Metrics
from streams.notice_state import RunState, encode_state, run_key
from streams.processor import Record, VisitProcessor, guarded
from streams.transaction import Chain, DictStore, commit_now
from synthetic.visits import EpisodeGenerator, VisitGenerator


def feed(kind: str, n: int) -> list[tuple[bytes, bytes]]:
    if kind == "live":
        gen: VisitGenerator | EpisodeGenerator = VisitGenerator(
            seed=9, clean_share=0.0, malformed_share=0.0, live=True, patients=5000
        )
    elif kind == "visits":
        gen = VisitGenerator(seed=42, patients=5000)
    else:
        gen = EpisodeGenerator(seed=42, patients=500)
    return [(r.key, r.value) for r in gen.records(n)]


#: The processor's clock in every run: outputs carry it, so a digest compares across builds.
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def run(
    records: list[tuple[bytes, bytes]],
    batch: int,
    settings: Settings,
    engine: Engine,
    digest: Any = None,
    done_through: tuple[date, date] | None = None,
) -> float:
    """CPU seconds to process `records` from an empty state; with `digest` (a hashlib
    object), every output (topic, key, value) in order is fed to it. `done_through`: (since,
    last date) of a daily run finished before the records (--late)."""
    store, chain = DictStore(), Chain()
    if done_through is not None:
        txn = chain.begin()
        state = RunState(since=done_through[0], done_through=done_through[1])
        txn.put(store, 0, run_key(0), encode_state(state))
        commit_now(txn)
    now = NOW
    proc = VisitProcessor(settings, Metrics(), engine, table=store, clock=lambda: now)
    topic = settings.topic_visits
    start = time.process_time()
    for b in range(0, len(records), batch):
        txn = chain.begin()
        for i, (key, value) in enumerate(records[b : b + batch], b):
            outs = guarded(proc, Record(topic, 0, i, key, value, 0), txn)
            if digest is not None:
                for o in outs:
                    _feed(digest, o.topic.encode(), o.key or b"", o.value or b"")
        commit_now(txn)
    spent = time.process_time() - start
    if digest is not None:  # and the state the run left
        for partition, data in sorted(store.data.items()):
            for k, v in sorted(data.items()):
                _feed(digest, str(partition).encode(), k, v)
    return spent


def _feed(digest: Any, *parts: bytes) -> None:
    for p in parts:
        digest.update(len(p).to_bytes(8, "big") + p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=20_000)
    ap.add_argument("--feed", choices=("live", "visits", "episodes"), default="live")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0)
    # A refactor's oracle: the SHA-256 of every output of one run (the `visits` and
    # `episodes` feeds are seeded; `live` follows today's date). Equal before and after
    # means the records published did not change.
    ap.add_argument("--digest", action="store_true")
    ap.add_argument("--late", action="store_true")
    args = ap.parse_args()
    settings = Settings.from_env({})
    engine = Engine()
    records = feed(args.feed, args.visits)
    span = None
    if args.late:
        days = [orjson.loads(value)["date_of_service"] for _, value in records]
        span = (date.fromisoformat(min(days)), date.fromisoformat(max(days)))
        print(f"--late: daily run done {span[0]} through {span[1]} before the run")
    runs = [run(records, args.batch, settings, engine, None, span) for _ in range(args.repeat)]
    per = [r / len(records) * 1e6 for r in runs]
    print(
        f"{args.feed}: {len(records):,} records, batches of {args.batch}: "
        f"{statistics.median(per):.1f} us a record of CPU (runs: {', '.join(f'{p:.1f}' for p in per)})"
    )
    if args.digest:
        h = hashlib.sha256()
        run(records, args.batch, settings, engine, h, span)
        print(f"digest of the outputs: {h.hexdigest()}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(records, args.batch, settings, engine, None, span)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
