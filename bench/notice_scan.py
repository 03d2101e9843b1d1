"""The notices' daily run over one partition of many patients (benchmark, not a test; issue 22).

    .venv/bin/python bench/notice_scan.py [--patients 100000] [--distinct 4000]
        [--chunks 100,500,2000] [--store dict|rocksdb|both] [--no-profile]

1. Builds the state of `--distinct` patients the way the worker does: their episodes of care
   (synthetic/visits.py EpisodeGenerator cohorts, as tests/integration/test_episodes_stream.py
   `episode_feed`) go through VisitProcessor into one partition of a table (compliance/
   state_layout.py format 3), one transaction per 500 visits, each committed with commit_now.
   Feeding 100,000 patients (~3 million visits) through the processor would take well over the
   bench's budget, so when `--patients` is larger the distinct patients' keys (heads, visits)
   are copied under new patient refs (`<ref>~<n>`) until the partition holds `--patients`
   patients; the output says so.
2. Runs the daily run (streams/notice_run.py NoticeRun) over it: `step()` on a Chain
   transaction, each committed with commit_now, until `run.more` is False, for each chunk size
   (TC_NOTICE_SCAN_CHUNK) and two clocks:
   - daily: a date inside the histories' span (the middle date of service), the last date done
     the day before: one date;
   - catch-up: 30 days after the last date of service, the last date done that date: 30 dates.
   Each run starts from the same state (the bench's store undoes the run's writes after it).
   Prints per-chunk wall time of `step()` (the event loop is blocked for it; the pipeline
   writes the store later) and of `step()` + commit: max, p99, median; the total; notices;
   RSS.
3. Prints a cProfile (top 15 by cumulative time) of one chunk at the default size (catch-up).

Stores (`--store`): `dict` is the bench's in-memory store (keys grouped by patient, sorted
owners: the reads the RocksDB store makes by seek, without a scan of the partition - DictStore's
`prefixed`/`owners_after` scan the whole partition, hopeless at 3 million keys); `rocksdb`
opens a rocksdict Rdict directly (no faust) with a small adapter doing what streams/tables.py
TableStore does for RocksDB (values with their tag in front, seek-based prefix and owner reads,
one write batch per commit).
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import gc
import io
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from compliance import Engine
from runtime.settings import Settings
from streams.metrics import Metrics
from streams.notice_run import NoticeRun
from streams.notice_state import encode_state, read_state, run_key
from streams.processor import Record, VisitProcessor, guarded
from streams.transaction import (
    LOCAL,
    Chain,
    Tag,
    commit_now,
    owner_of,
    past_owner,
)
from synthetic.visits import EpisodeGenerator

PARTITION = 0
#: Patients per generator cohort (as bench/state_memory.py).
COHORT = 2000
#: Visits per transaction while building the state.
BATCH = 500
START = date(2026, 1, 5)


def rss() -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out["VmRSS"], out["VmHWM"]


class GroupedStore:
    """A `Store` in memory whose reads cost what the RocksDB store's seeks do: keys grouped by
    owner (a patient's head and visits), owners kept sorted (rebuilt lazily after new owners),
    the other keys (partition keys) apart. Writes can be undone (`restore`)."""

    def __init__(self) -> None:
        self.groups: dict[bytes, dict[bytes, bytes]] = {}
        self.other: dict[bytes, bytes] = {}
        self._owners: list[bytes] = []
        self._dirty = False
        #: key -> value before the first write since `journal_on` (None: absent).
        self._journal: dict[bytes, bytes | None] | None = None

    name = "patient-history"
    changelog_topic = "patient-history-changelog"

    def _where(self, key: bytes) -> dict[bytes, bytes]:
        owner = owner_of(key)
        if owner is None:
            return self.other
        group = self.groups.get(owner)
        if group is None:
            group = self.groups[owner] = {}
            self._dirty = True
        return group

    def get(self, partition: int, key: bytes) -> bytes | None:
        owner = owner_of(key)
        if owner is None:
            return self.other.get(key)
        group = self.groups.get(owner)
        return None if group is None else group.get(key)

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self.other.items())
        for group in list(self.groups.values()):
            yield from list(group.items())

    def prefixed(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        group = self.groups.get(prefix[:-1], {})
        yield from sorted(kv for kv in group.items() if kv[0].startswith(prefix))

    def owners_after(self, partition: int, after: bytes | None, limit: int) -> list[bytes]:
        if self._dirty:
            self._owners = sorted(o for o, g in self.groups.items() if g)
            self._dirty = False
        i = 0 if after is None else bisect.bisect_left(self._owners, past_owner(after))
        return self._owners[i : i + limit]

    def write(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        tag: Tag,
        changelog_offset: int | None,
    ) -> None:
        for key, value in changes.items():
            where = self._where(key)
            if self._journal is not None and key not in self._journal:
                self._journal[key] = where.get(key)
            if value is None:
                where.pop(key, None)
                self._dirty = True
            else:
                where[key] = value

    def epoch(self, partition: int) -> int:
        return LOCAL.epoch

    def journal_on(self) -> None:
        self._journal = {}

    def restore(self) -> int:
        """Undo every write since `journal_on`; returns the keys restored."""
        journal, self._journal = self._journal or {}, None
        self.write(PARTITION, journal, LOCAL, None)
        return len(journal)


class RocksStore:
    """What streams/tables.py TableStore does over a partition's RocksDB, on a rocksdict Rdict
    opened directly (faust's store wraps the same Rdict in raw mode): tagged values, seek-based
    prefix and owner reads, one write batch per commit. Writes can be undone (`restore`)."""

    name = "patient-history"
    changelog_topic = "patient-history-changelog"

    def __init__(self, path: str) -> None:
        import rocksdict
        from faust.stores.rocksdb import RocksDBOptions

        from streams.tables import pack, unpack

        self._rocksdict = rocksdict
        self._pack, self._unpack = pack, unpack
        self.path = path
        # faust's own default options and open (block cache, bloom filter, raw mode).
        self.db = RocksDBOptions().open(Path(path))
        self._journal: dict[bytes, bytes | None] | None = None

    def get(self, partition: int, key: bytes) -> bytes | None:
        raw = self.db.get(key)
        return None if raw is None else self._unpack(bytes(raw))[1]

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        for key, raw in self.db.items():
            yield bytes(key), self._unpack(bytes(raw))[1]

    def prefixed(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter()
        it.seek(prefix)
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(prefix):
                return
            yield key, self._unpack(bytes(it.value()))[1]
            it.next()

    def owners_after(self, partition: int, after: bytes | None, limit: int) -> list[bytes]:
        from streams.tables import rocks_owners_after

        return rocks_owners_after(self.db, after, limit)

    def write(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        tag: Tag,
        changelog_offset: int | None,
    ) -> None:
        batch = self._rocksdict.WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if self._journal is not None and key not in self._journal:
                self._journal[key] = self.get(partition, key)
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, self._pack(tag, value))
        self.db.write(batch)

    def epoch(self, partition: int) -> int:
        return LOCAL.epoch

    def load(self, source: GroupedStore) -> None:
        """Every key of `source`, in write batches of ~10,000 keys; then a flush and a
        compaction, as a store restored long ago would be."""
        batch = self._rocksdict.WriteBatch(raw_mode=True)
        for n, (key, value) in enumerate(source.items(PARTITION), 1):
            batch.put(key, self._pack(LOCAL, value))
            if n % 10_000 == 0:
                self.db.write(batch)
                batch = self._rocksdict.WriteBatch(raw_mode=True)
        self.db.write(batch)
        self.db.flush()
        self.db.compact_range(None, None)

    def journal_on(self) -> None:
        self._journal = {}

    def restore(self) -> int:
        journal, self._journal = self._journal or {}, None
        self.write(PARTITION, journal, LOCAL, None)
        return len(journal)

    def close(self) -> None:
        self.db.close()


def build(distinct: int, seed: int, engine: Engine) -> tuple[GroupedStore, dict[str, Any]]:
    """`distinct` patients' episodes through VisitProcessor into partition 0 of a store."""
    store = GroupedStore()
    settings = Settings.from_env({})
    records: list[tuple[bytes, bytes]] = []
    made = k = 0
    started = time.perf_counter()
    while made < distinct:
        n = min(COHORT, distinct - made)
        gen = EpisodeGenerator(seed=seed * 1_000_003 + k, patients=n, start=START)
        records.extend((r.key, r.value) for r in gen.cohort())
        made += n
        k += 1
    generated = time.perf_counter() - started
    dates = [r[1].split(b'"date_of_service":"', 1)[1][:10].decode() for r in records]
    first, last = date.fromisoformat(min(dates)), date.fromisoformat(max(dates))
    # Judged as they arrive: the processor's clock is each visit's own day (no visit from the
    # future, no history pruned by a far clock).
    day = {"now": datetime.combine(first, dtime(12), UTC)}
    processor = VisitProcessor(
        settings, Metrics(), engine=engine, clock=lambda: day["now"], table=store
    )
    chain = Chain()
    started = time.perf_counter()
    for i in range(0, len(records), BATCH):
        txn = chain.begin()
        for offset in range(i, min(i + BATCH, len(records))):
            key, value = records[offset]
            day["now"] = datetime.combine(date.fromisoformat(dates[offset]), dtime(20), UTC)
            guarded(processor, Record("visits", PARTITION, offset, key, value, None), txn)
        commit_now(txn)
    fed = time.perf_counter() - started
    info = {
        "visits": len(records),
        "generated_s": generated,
        "fed_s": fed,
        "first": first,
        "last": last,
    }
    return store, info


def copy_patients(store: GroupedStore, patients: int) -> int:
    """Copy the distinct patients' keys under new refs until `patients` are stored; returns the
    copies made. Values are shared (the same bytes objects), keys are new."""
    base = sorted(store.groups)
    copies = 0
    n = 1
    while len(store.groups) < patients:
        for owner in base:
            if len(store.groups) >= patients:
                break
            new = owner + b"~%d" % n
            store.groups[new] = {
                new + key[len(owner) :]: v for key, v in store.groups[owner].items()
            }
            copies += 1
        n += 1
    store._dirty = True
    return copies


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def set_done(store: Any, done_through: date) -> None:
    key = run_key(PARTITION)
    state = read_state(store.get(PARTITION, key))
    state = msgspec.structs.replace(
        state, done_through=done_through, start=None, target=None, cursor=None, counting=()
    )
    store.write(PARTITION, {key: encode_state(state)}, LOCAL, None)


def daily_run(
    store: Any,
    engine: Engine,
    chunk: int,
    now: datetime,
    done_through: date,
    profile_chunk: int | None = None,
) -> dict[str, Any]:
    """One partition's daily run to the end, a chunk per committed transaction."""
    set_done(store, done_through)
    store.journal_on()
    settings = Settings.from_env({"TC_NOTICE_SCAN_CHUNK": str(chunk)})
    metrics = Metrics()
    run = NoticeRun(settings, metrics, engine, store, clock=lambda: now)
    chain = Chain()
    steps: list[float] = []
    walls: list[float] = []
    notices = 0
    profile = None
    started = time.perf_counter()
    while True:
        txn = chain.begin()
        i = len(steps)
        if profile_chunk is not None and i == profile_chunk:
            profile = cProfile.Profile()
            t0 = time.perf_counter()
            profile.enable()
            out = run.step(txn, {PARTITION})
            profile.disable()
        else:
            t0 = time.perf_counter()
            out = run.step(txn, {PARTITION})
        t1 = time.perf_counter()
        commit_now(txn)
        t2 = time.perf_counter()
        steps.append(t1 - t0)
        walls.append(t2 - t0)
        notices += len(out)
        if not run.more or profile is not None:
            break  # the run is done, or its profiled chunk is
    total = time.perf_counter() - started
    state = read_state(store.get(PARTITION, run_key(PARTITION)))
    errors = metrics.notice_run_errors._value.get()
    restored = store.restore()
    return {
        "steps": steps,
        "walls": walls,
        "total": total,
        "notices": notices,
        "errors": errors,
        "done_through": state.done_through,
        "restored": restored,
        "profile": profile,
    }


def report(label: str, chunk: int, r: dict[str, Any]) -> None:
    s, w = r["steps"], r["walls"]
    ms = 1000.0
    cur, peak = rss()
    print(
        f"{label:<9} chunk {chunk:>5}: {len(s):>4} chunks; step ms max {max(s) * ms:7.1f} "
        f"p99 {pct(s, 0.99) * ms:7.1f} median {statistics.median(s) * ms:7.1f}; "
        f"step+commit ms max {max(w) * ms:7.1f} p99 {pct(w, 0.99) * ms:7.1f} "
        f"median {statistics.median(w) * ms:7.1f}; total {r['total']:6.1f} s; "
        f"notices {r['notices']:,}; errors {r['errors']:.0f}; done through {r['done_through']}; "
        f"RSS {cur:,.0f} MiB (peak {peak:,.0f})",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument(
        "--distinct",
        type=int,
        default=4000,
        help="patients fed through the processor (the rest are copies of them)",
    )
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--chunks", default="100,500,2000")
    ap.add_argument("--store", choices=("dict", "rocksdb", "both"), default="both")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    chunks = [int(c) for c in args.chunks.split(",")]
    distinct = min(args.distinct, args.patients)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    engine = Engine()
    store, info = build(distinct, args.seed, engine)
    visit_keys = sum(len(g) for g in store.groups.values())
    print(
        f"built: {distinct:,} distinct patients, {info['visits']:,} visits "
        f"(dates {info['first']} .. {info['last']}) through VisitProcessor in "
        f"{info['fed_s']:.1f} s ({info['visits'] / info['fed_s']:,.0f} visits/s; generated in "
        f"{info['generated_s']:.1f} s); {visit_keys:,} keys",
        flush=True,
    )
    copies = copy_patients(store, args.patients)
    keys = sum(len(g) for g in store.groups.values())
    size = sum(len(k) + len(v) for g in store.groups.values() for k, v in g.items())
    if copies:
        print(
            f"copied: {copies:,} patients are copies of the distinct ones' keys under new refs "
            f"(not fed through the processor)",
            flush=True,
        )
    cur, peak = rss()
    print(
        f"state: {len(store.groups):,} patients, {keys:,} keys, {size / 2**20:,.0f} MiB of keys "
        f"and values in partition {PARTITION}; RSS {cur:,.0f} MiB (peak {peak:,.0f})",
        flush=True,
    )
    n_patients = len(store.groups)
    middle = info["first"] + (info["last"] - info["first"]) / 2
    scenarios = [
        ("daily", datetime.combine(middle, dtime(8), UTC), middle - timedelta(days=1)),
        (
            "catch-up",
            datetime.combine(info["last"] + timedelta(days=30), dtime(8), UTC),
            info["last"],
        ),
    ]
    print(
        f"clocks: daily {scenarios[0][1]:%Y-%m-%d %H:%M} UTC (done through "
        f"{scenarios[0][2]}: 1 date); catch-up {scenarios[1][1]:%Y-%m-%d %H:%M} UTC (done "
        f"through {scenarios[1][2]}: 30 dates); timings: perf_counter around step() and "
        f"around step() + commit_now",
        flush=True,
    )
    stores: list[tuple[str, Any]] = []
    if args.store in ("dict", "both"):
        stores.append(("dict", store))
    tmp = None
    if args.store in ("rocksdb", "both"):
        tmp = tempfile.mkdtemp(prefix="tc-notice-scan-")
        rocks = RocksStore(tmp)
        t0 = time.perf_counter()
        rocks.load(store)
        du = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file())
        print(
            f"rocksdb: loaded in {time.perf_counter() - t0:.1f} s, {du / 2**20:,.0f} MiB on "
            f"disk ({tmp})",
            flush=True,
        )
        if args.store == "rocksdb":
            del store
            gc.collect()
        stores.append(("rocksdb", rocks))
    try:
        for kind, table in stores:
            print(f"[store: {kind}]", flush=True)
            for label, now, done in scenarios:
                for chunk in chunks:
                    r = daily_run(table, engine, chunk, now, done)
                    report(label, chunk, r)
        if not args.no_profile:
            kind, table = stores[0]
            label, now, done = scenarios[1]
            chunk = Settings().notice_scan_chunk
            middle_chunk = n_patients // chunk // 2
            r = daily_run(table, engine, chunk, now, done, profile_chunk=middle_chunk)
            out = io.StringIO()
            pstats.Stats(r["profile"], stream=out).sort_stats("cumulative").print_stats(15)
            print(
                f"[profile: store {kind}, {label}, chunk {chunk}, one chunk in the middle of the "
                f"run (the run stops after it; cProfile, top 15 by cumulative time)]"
            )
            print(out.getvalue().rstrip())
    finally:
        for kind, table in stores:
            if kind == "rocksdb":
                table.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
