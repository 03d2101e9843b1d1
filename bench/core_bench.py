"""Core benchmark (not a test): validation + all rules + alert encoding on a realistic mix.

    .venv/bin/python bench/core_bench.py [--visits N] [--repeat R] [--stateful]
        [--generator visits|episodes] [--patients P] [--cache-mb M] [--gc-threshold T]
        [--profile]

Prints visits/s and microseconds per visit (median of R runs) on one core, by wall time and by
the process's CPU time (the second is what other work on a shared machine inflates least); --stateful keeps a
patient history (seq = record index) as the worker does, in the worker's table layout
(compliance/state_layout.py: read and decoded per visit, what changed encoded and written), and
reports the state's size per patient; --generator episodes feeds patients followed through episodes of care
(synthetic/visits.py EpisodeGenerator: ~25 visits per patient over months) instead of
independent visits; --patients is the pool of patients the visits are drawn from (5,000, as in
bench/e2e.py); --cache-mb keeps decoded histories in memory as the worker does
(streams/state_cache.py; 0: decode every visit, as before it); --gc-threshold sets the
collector's first threshold (Python's default is 700); --profile adds a pyinstrument profile of one run showing where the time
per visit goes.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compliance import Engine, state_layout
from schemas import Rejection, decode_visit
from streams.state_cache import DecodedCache
from synthetic.visits import EpisodeGenerator, VisitGenerator


class Table:
    """The worker's table as the check stage uses it (compliance/state_layout.py): a head and
    one key per visit for each patient, read by prefix (an index, as the memory store keeps)."""

    def __init__(self) -> None:
        self.heads: dict[bytes, bytes] = {}
        self.visits: dict[bytes, dict[bytes, bytes]] = {}

    def read(self, patient: bytes) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
        return self.heads.get(patient), sorted(self.visits.get(patient, {}).items())

    def write(self, patient: bytes, writes: list[tuple[bytes, bytes | None]]) -> None:
        visits = self.visits.setdefault(patient, {})
        for key, value in writes:
            if key == patient:
                assert value is not None
                self.heads[patient] = value
            elif value is None:
                visits.pop(key, None)
            else:
                visits[key] = value

    def sizes(self) -> list[int]:
        return [
            len(self.heads.get(p, b"")) + sum(len(k) + len(v) for k, v in visits.items())
            for p, visits in self.visits.items()
        ]


def run(
    records: list[bytes],
    engine: Engine,
    stateful: bool = False,
    table: Table | None = None,
    cache_mb: int = 0,
) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of this process, alerts, rejected)."""
    now = datetime.now(UTC)
    alerts = rejected = 0
    table = Table() if table is None else table
    cache: DecodedCache[state_layout.Stored] | None = (
        DecodedCache(cache_mb * 2**20) if cache_mb else None
    )
    start = time.perf_counter()
    cpu = time.process_time()
    for seq, value in enumerate(records):
        visit = decode_visit(value)
        if isinstance(visit, Rejection):
            rejected += 1
            continue
        if stateful:
            key = visit.patient_ref.encode()
            head, visits = table.read(key)
            if head is None and not visits:
                stored = state_layout.EMPTY
            elif cache is not None:
                stored = cache.get(
                    0,
                    key,
                    (head, visits),
                    len(head or b"") + sum(len(k) + len(v) for k, v in visits),
                    lambda: state_layout.read(key, head, visits),  # noqa: B023 (called at once)
                )[0]
            else:
                stored = state_layout.read(key, head, visits)
            outcome = engine.evaluate(visit, now, stored.history, seq)
            assert outcome.history is not None
            writes, after = state_layout.changes(
                key, stored, outcome.history, (visit.visit_id, seq)
            )
            table.write(key, writes)
            if cache is not None:
                head, visits = table.read(key)
                size = len(head or b"") + sum(len(k) + len(v) for k, v in visits)
                cache.put(0, key, (head, visits), size, after)
        else:
            outcome = engine.evaluate(visit, now)
        for alert in outcome.alerts:
            alert.to_json()
        outcome.checked.to_json()
        alerts += len(outcome.alerts)
    return time.perf_counter() - start, time.process_time() - cpu, alerts, rejected


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--stateful", action="store_true")
    ap.add_argument("--generator", choices=("visits", "episodes"), default="visits")
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--cache-mb", type=int, default=0)
    ap.add_argument("--gc-threshold", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    make = VisitGenerator if args.generator == "visits" else EpisodeGenerator
    gen = make(seed=42, malformed_share=0.02, patients=args.patients)
    records = [r.value for r in gen.records(args.visits)]
    engine = Engine()
    if args.gc_threshold:
        import gc

        gc.collect()  # as the worker does at start (streams/worker.py tune_gc)
        gc.freeze()
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    run(records[:2000], engine, args.stateful)  # warm-up
    times = []
    cpu_times = []
    for _ in range(args.repeat):
        elapsed, cpu, alerts, rejected = run(records, engine, args.stateful, cache_mb=args.cache_mb)
        times.append(elapsed)
        cpu_times.append(cpu)
    med = statistics.median(times)
    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, {platform.system()}"
    )
    mode = (
        f"with per-patient history ({args.patients} patients, cache {args.cache_mb} MB, "
        f"gc threshold {args.gc_threshold or 'default'})"
        if args.stateful
        else "stateless"
    )
    print(
        f"visits: {args.visits} ({args.generator}; alerts {alerts}, rejected {rejected}), "
        f"runs: {args.repeat}, {mode}, rule set {engine.ruleset_version}"
    )
    if args.stateful:
        table = Table()
        run(records, engine, True, table)
        sizes = sorted(table.sizes())
        print(
            f"state: {len(sizes)} patients, bytes per patient median {statistics.median(sizes):,.0f}, "
            f"max {sizes[-1]:,}"
        )
    print(
        f"median: {args.visits / med:,.0f} visits/s, {med / args.visits * 1e6:.1f} us/visit "
        f"(min {args.visits / min(times):,.0f}, max {args.visits / max(times):,.0f} visits/s)"
    )
    cpu_med = statistics.median(cpu_times)
    print(
        f"cpu median: {args.visits / cpu_med:,.0f} visits/s, {cpu_med / args.visits * 1e6:.1f} "
        "us/visit of CPU time (process_time: what a busy machine's scheduling does not inflate)"
    )
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        run(records, engine, args.stateful, cache_mb=args.cache_mb)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
