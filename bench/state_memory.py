"""Worker memory and state recovery with many patients' open episodes (benchmark, not a test).

Feeds the real worker, on the local broker, the first `--visits` visits of `--patients` patients'
episodes of care (synthetic/visits.py EpisodeGenerator: evaluation with plan of care and
certification, treatment days, some flaws), so every patient has an open episode in the
`patient-history` table. Then prints:

- feed: visits, seconds, visits/s (the whole worker, state included);
- the worker's RSS (VmRSS) and peak (VmHWM) with that state, and the state store's keys/size;
- restart, warm: local RocksDB kept: recovery seconds (the worker's
  therapy_compliance_state_recovery_seconds) and RSS;
- restart, cold: local state deleted (a new machine): the table is rebuilt from its changelog:
  recovery seconds and RSS.

    ops/kafka/local-kafka start
    KAFKA_TEST_BROKERS=127.0.0.1:19092 .venv/bin/python bench/state_memory.py \
        [--patients 100000] [--visits 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.visits import EpisodeGenerator
from tests.integration.harness import Topics, Worker, create_topics, produce

#: Patients per generator: one cohort each, all starting the same week.
CHUNK = 2000
START = date(2026, 1, 5)


def open_episodes(patients: int, visits: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Each patient's first `visits` visits (the evaluation with its plan of care and
    certification, then treatment days): every patient has an open episode. In date order,
    each patient's own order kept."""
    rows: list[tuple[date, int, bytes, bytes]] = []
    seen: dict[bytes, int] = {}
    made = 0
    k = 0
    while made < patients:
        n = min(CHUNK, patients - made)
        gen = EpisodeGenerator(seed=seed * 1_000_003 + k, patients=n, start=START)
        for rec in gen.cohort():
            count = seen.get(rec.key, 0)
            if count < visits:
                seen[rec.key] = count + 1
                dos = rec.value.split(b'"date_of_service":"', 1)[1][:10].decode()
                rows.append((date.fromisoformat(dos), len(rows), rec.key, rec.value))
        made += n
        k += 1
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(key, value) for _, _, key, value in rows]


def status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def metric(worker: Worker, name: str) -> dict[str, float]:
    """Series of one metric, by their label text."""
    out = {}
    for line in worker.metrics().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name) :]] = float(value)
    return out


async def wait_processed(worker: Worker, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while worker.processed() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {worker.processed()} of {n} processed:\n{worker.tail()}")
        await asyncio.sleep(1)


async def recovered(worker: Worker, timeout: float = 900) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = metric(worker, "therapy_compliance_state_recovery_seconds")
        except (OSError, AssertionError):
            got = {}
        if got and max(got.values()) > 0:
            return max(got.values())
        await asyncio.sleep(0.5)
    raise SystemExit(f"no recovery time reported:\n{worker.tail()}")


def describe(label: str, worker: Worker) -> None:
    assert worker.proc is not None
    mem = status(worker.proc.pid)
    keys = metric(worker, "therapy_compliance_state_keys")
    size = metric(worker, "therapy_compliance_state_bytes")
    print(
        f"{label}: RSS {mem['VmRSS']:.0f} MiB (peak {mem['VmHWM']:.0f} MiB); "
        f"state keys {sum(keys.values()):,.0f}, on disk {sum(size.values()) / 2**20:.1f} MiB"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--visits", type=int, default=3, help="visits per patient")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    records = open_episodes(args.patients, args.visits, args.seed)
    patients = len({k for k, _ in records})
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}")
    print(
        f"feed: {len(records):,} visits of {patients:,} patients (the first {args.visits} of "
        f"their episode; built in {time.perf_counter() - t0:.0f} s)"
    )
    t = Topics.unique(f"bench-state-{uuid.uuid4().hex[:6]}")
    await create_topics(t)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        worker = Worker(
            t, workdir, f"tc-bench-state-{uuid.uuid4().hex[:6]}", {"TC_LOG_LEVEL": "warning"}
        )
        worker.start()
        started = time.perf_counter()
        await produce(t.visits, records)
        await wait_processed(worker, len(records), timeout=3600)
        took = time.perf_counter() - started
        print(f"fed and processed in {took:.0f} s: {len(records) / took:,.0f} visits/s")
        await asyncio.sleep(35)  # the state gauges refresh every 30 s
        describe("after the feed", worker)
        worker.stop()

        worker.start()
        print(f"restart, local state kept: recovery {await recovered(worker):.1f} s")
        await asyncio.sleep(35)
        describe("  after it", worker)
        worker.stop()

        shutil.rmtree(workdir / f"data-{worker.app_id}-{worker.port}")
        worker.start(timeout=900)
        print(
            f"restart, local state deleted (rebuilt from the changelog): recovery "
            f"{await recovered(worker):.1f} s"
        )
        await asyncio.sleep(35)
        describe("  after it", worker)
        worker.stop()


if __name__ == "__main__":
    asyncio.run(main())
