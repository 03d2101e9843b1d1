"""Backfill benchmark (not a test): `therapy-compliance audit --jobs N` against --jobs 1.

    .venv/bin/python bench/audit_jobs.py [--visits 100000] [--jobs 2] [--repeat 3]

Writes a synthetic history (synthetic/visits.py EpisodeGenerator, seed 42, 2% malformed:
patients followed through episodes, so every visit is evaluated with its patient's state) to a
temporary file, then runs the installed command's module (`python -m cli.main audit`) with
--jobs 1 and --jobs N alternately, `repeat` times each, alerts to /dev/null. Prints wall time
(process start to exit, so start-up and the merge are included) and visits/s for each run, the
medians and the speed-up (median of the per-pair ratios, each pair run back to back), and
checks that both give the same summary. CPU seconds (all processes of a run, from
getrusage) show the work --jobs adds; the speed-up on 2 free cores is bounded by
CPU(1) / (CPU(N) / N + the serial start-up and merge), and falls below it when other work
shares the cores (the load average printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.visits import EpisodeGenerator

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(path: str, jobs: int) -> tuple[float, float, dict[str, object]]:
    """Wall seconds, CPU seconds (all processes of the run) and the summary."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cpu = _cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", "--jobs", str(jobs), path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    summary: dict[str, object] = orjson.loads(proc.stderr.splitlines()[-1])["summary"]
    return elapsed, _cpu() - cpu, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()}; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="tc-bench-audit-") as tmp:
        path = os.path.join(tmp, "history.jsonl")
        gen = EpisodeGenerator(seed=42, malformed_share=0.02)
        with open(path, "wb") as f:
            for rec in gen.records(args.visits):
                f.write(rec.value + b"\n")
        print(f"history: {args.visits} lines, {os.path.getsize(path) / 1e6:.1f} MB")
        one: list[float] = []
        many: list[float] = []
        for i in range(args.repeat):
            t1, c1, s1 = run(path, 1)
            tn, cn, sn = run(path, args.jobs)
            assert s1 == sn, "summaries differ"
            visits = int(str(s1["visits_read"]))
            one.append(t1)
            many.append(tn)
            print(
                f"run {i + 1}: --jobs 1 {t1:.2f} s ({visits / t1:,.0f} visits/s), --jobs "
                f"{args.jobs} {tn:.2f} s ({visits / tn:,.0f} visits/s), speed-up {t1 / tn:.2f}x; "
                f"CPU s {c1:.2f} vs {cn:.2f} (+{cn / c1 - 1:.0%}: the routing parse and merge), "
                f"load average {os.getloadavg()[0]:.2f}"
            )
        m1, mn = statistics.median(one), statistics.median(many)
        ratio = statistics.median(a / b for a, b in zip(one, many, strict=True))
        print(
            f"median: --jobs 1 {visits / m1:,.0f} visits/s, --jobs {args.jobs} "
            f"{visits / mn:,.0f} visits/s; speed-up {ratio:.2f}x (median of pairs); "
            f"valid visits {visits}, alerts {s1['alerts']}"
        )


if __name__ == "__main__":
    main()
