"""Join benchmark (not a test): HL7 v2 charges and notes through the EHR path's parse and join.

In-process, one core, no broker, on the demo sender's traffic (synthetic/hl7.py, seed 42,
a DFT^P03 and an MDM^T02 per visit, some visits re-sent or without a note), with the demo
profile so that every message becomes a part:

- parse: `ehr.parse_hl7v2` per message (python-hl7 split, profile lookups, patient_ref HMAC);
- join: `ehr.add_part` + `ehr.assemble` per part, on parts parsed beforehand;
- core: both, message by message, as the worker's two stages do them (the pure code);
- stages: the worker's record processors (streams/ehr_stages.py): EhrParser (parse, re-key,
  part JSON) then VisitJoiner with an in-memory table (part JSON decoded, the table value
  decoded and re-encoded, the visit event encoded): everything the worker does per record
  except Kafka and faust.

End to end with --e2e (needs a broker, KAFKA_TEST_BROKERS), fresh topics:

- worker backlog: the messages written to the inbound topic first (as the gateway writes them),
  then a worker started (`therapy-compliance worker`, EHR stages on): visits/s out of the join,
  measured on the broker timestamps of the visit topic (first to last), and the checks after;
- live: a gateway and a worker; N MLLP senders send every message and wait for each ACK, as
  interface engines do; AA'd messages/s, and latency from the ACK of the message that
  completed a visit to the visit's record on the visit topic.

Visits with one half only are emitted after TC_JOIN_WAIT_S; the benchmark sets it to an hour so
it measures the joins of complete visits (what the sender expects: cli/demo_hl7.py).

    taskset -c 1 .venv/bin/python bench/join.py [--visits 5000] [--repeat 5]
    KAFKA_TEST_BROKERS=127.0.0.1:19092 .venv/bin/python bench/join.py --e2e [--visits 2000] \
        [--senders 1,10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from aiokafka import AIOKafkaConsumer

from cli.demo_hl7 import join_expectation
from ehr import EhrConfig, VisitState, add_part, assemble, load_config, mllp_frame, parse_hl7v2
from ehr.parts import ChargePart, DocumentationPart
from runtime.settings import Settings
from streams.ehr_stages import EhrParser, VisitJoiner
from streams.metrics import Metrics
from streams.processor import Record
from streams.transaction import Chain, DictStore, commit_now
from synthetic.hl7 import Hl7Message, Hl7VisitGenerator, demo_profile_text

KEY = "bench-key-0123456789abcdef"
Part = ChargePart | DocumentationPart


def traffic(visits: int, seed: int = 42) -> list[list[Hl7Message]]:
    return list(Hl7VisitGenerator(seed=seed, patients=400).visits(visits))


# ---- in-process -------------------------------------------------------------------------------


def run_parse(raws: list[bytes], config: EhrConfig) -> tuple[float, list[Part]]:
    t0 = time.perf_counter()
    parts = [parse_hl7v2(raw, config) for raw in raws]
    elapsed = time.perf_counter() - t0
    out = [p for p in parts if isinstance(p, ChargePart | DocumentationPart)]
    assert len(out) == len(raws), "the demo profile accepts every demo message"
    return elapsed, out


def run_join(parts: list[Part]) -> tuple[float, int]:
    states: dict[str, VisitState] = {}
    emitted: dict[str, str] = {}
    events = 0
    t0 = time.perf_counter()
    for part in parts:
        key = part.visit.text
        state = states[key] = add_part(states.get(key), part)
        made = assemble(state)
        if isinstance(made, dict) and made["event_id"] != emitted.get(key):
            emitted[key] = made["event_id"]
            events += 1
    return time.perf_counter() - t0, events


def run_core(raws: list[bytes], config: EhrConfig) -> tuple[float, int]:
    states: dict[str, VisitState] = {}
    emitted: dict[str, str] = {}
    events = 0
    t0 = time.perf_counter()
    for raw in raws:
        part = parse_hl7v2(raw, config)
        assert isinstance(part, ChargePart | DocumentationPart)
        key = part.visit.text
        state = states[key] = add_part(states.get(key), part)
        made = assemble(state)
        if isinstance(made, dict) and made["event_id"] != emitted.get(key):
            emitted[key] = made["event_id"]
            events += 1
    return time.perf_counter() - t0, events


def run_stages(raws: list[bytes], settings: Settings, config: EhrConfig) -> tuple[float, int]:
    metrics = Metrics()
    parser = EhrParser(settings, config, metrics)
    joiner = VisitJoiner(settings, metrics, DictStore())
    inbound, parts_topic = settings.topic_hl7_inbound, settings.topic_ehr_parts
    chain = Chain()
    events = 0
    t0 = time.perf_counter()
    for offset, raw in enumerate(raws):
        for out in parser.handle(Record(inbound, 0, offset, None, raw, 1_772_470_800_000)):
            assert out.topic == parts_topic
            rec = Record(parts_topic, 0, offset, out.key, out.value, None)
            txn = chain.begin()  # one record per transaction, written at once
            events += sum(o.topic == settings.topic_visits for o in joiner.handle(rec, txn))
            commit_now(txn)
    return time.perf_counter() - t0, events


def median_of(fn: Callable[[], tuple[float, Any]], repeat: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        elapsed, result = fn()
        times.append(elapsed)
    return statistics.median(times), times, result


def in_process(args: argparse.Namespace) -> None:
    visits = traffic(args.visits)
    raws = [m.raw for v in visits for m in v]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo-profile.toml"
        path.write_text(demo_profile_text())
        config = load_config(KEY, path)
        settings = Settings.from_env(
            {"TC_EHR_PATIENT_KEY": KEY, "TC_EHR_PROFILE": str(path), "TC_JOIN_WAIT_S": "3600"}
        )
    complete, partial = join_expectation(visits)
    n = len(raws)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()}; pid {os.getpid()} on CPUs {sorted(os.sched_getaffinity(0))}"
    )
    print(
        f"traffic: {len(visits)} visits, {n} messages (mean {statistics.mean(map(len, raws)):.0f} "
        f"bytes); complete visit events expected {complete}, one-half visits {partial}; "
        f"runs: {args.repeat} (median)"
    )
    run_core(raws[:500], config)  # warm-up (imports, caches)
    med, times, parts = median_of(lambda: run_parse(raws, config), args.repeat)
    print(f"parse   {n / med:9,.0f} messages/s  {med / n * 1e6:7.1f} us/message  {_span(n, times)}")
    med, times, events = median_of(lambda: run_join(parts), args.repeat)
    assert events == complete, (events, complete)
    print(f"join    {n / med:9,.0f} parts/s     {med / n * 1e6:7.1f} us/part     {_span(n, times)}")
    med, times, events = median_of(lambda: run_core(raws, config), args.repeat)
    assert events == complete, (events, complete)
    print(
        f"core    {n / med:9,.0f} messages/s  {med / n * 1e6:7.1f} us/message  {_span(n, times)}"
        f"  = {len(visits) / med:,.0f} visits/s"
    )
    med, times, events = median_of(lambda: run_stages(raws, settings, config), args.repeat)
    assert events == complete, (events, complete)
    print(
        f"stages  {n / med:9,.0f} messages/s  {med / n * 1e6:7.1f} us/message  {_span(n, times)}"
        f"  = {len(visits) / med:,.0f} visits/s"
    )


def _span(n: int, times: list[float]) -> str:
    return f"(runs {n / max(times):,.0f} .. {n / min(times):,.0f}/s)"


# ---- end to end on the broker -----------------------------------------------------------------


class Proc:
    """A `therapy-compliance` subprocess with a health endpoint."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, health: str) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 - owned by the subprocess
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{args[1]} exited {self.proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(health, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"{args[1]} did not get healthy; see {log}")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


async def visit_times(
    topic: str, expected: int, timeout: float, field: str = "visit_id"
) -> dict[str, Any]:
    """visit -> the timestamps (ms) of its records (visit events, or parts with field="visit"),
    once `expected` records arrived."""
    from tests.integration.harness import BROKERS

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BROKERS,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: dict[str, list[int]] = {}
    n = 0
    deadline = time.monotonic() + timeout
    try:
        while n < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for recs in batch.values():
                for r in recs:
                    out.setdefault(str(orjson.loads(r.value)[field]), []).append(r.timestamp)
                    n += 1
    finally:
        await consumer.stop()
    if n < expected:
        raise SystemExit(f"only {n} of {expected} records on {topic} within {timeout:.0f}s")
    return out


async def send_mllp(port: int, visits: list[list[Hl7Message]], acked: dict[str, float]) -> int:
    """One sender: its visits' messages one at a time, each ACK awaited; the time of the ACK of
    the message that completes each visit (both halves in) is kept for the latency."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    aa = 0
    try:
        for visit in visits:
            kinds: set[str] = set()
            for m in visit:
                writer.write(mllp_frame(m.raw))
                await writer.drain()
                ack = await reader.readuntil(b"\x1c\r")
                aa += b"MSA|AA|" in ack
                kinds.add(m.kind)
                if len(kinds) == 2 and m.visit not in acked:
                    acked[m.visit] = time.time()
    finally:
        writer.close()
    return aa


def path_env(tag: str, workdir: Path, profile: Path) -> tuple[Any, dict[str, str]]:
    """Fresh topics and settings for one worker (and gateway) of the benchmark."""
    from tests.integration.harness import BROKERS, Topics, free_port

    t = Topics.unique(f"bench-join-{tag}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    env.update(t.env())
    env.update(
        TC_BROKERS=BROKERS,
        TC_APP_ID=f"bench-join-{tag}-{t.visits.split('.')[1]}",
        TC_EHR_PATIENT_KEY=KEY,
        TC_EHR_PROFILE=str(profile),
        TC_JOIN_WAIT_S="3600",
        TC_TOPIC_HL7_INBOUND=f"{t.visits}.hl7",
        TC_TOPIC_FHIR_INBOUND=f"{t.visits}.fhir",
        TC_TOPIC_EHR_PARTS=f"{t.visits}.parts",
        TC_TOPIC_EHR_DEADLETTER=f"{t.visits}.ehrdl",
        TC_PARTITIONS="4",
        TC_LOG_LEVEL="warning",
        TC_DATA_DIR=str(workdir / f"data-{tag}"),
        TC_WEB_PORT=str(free_port()),
        TC_MLLP_PORT=str(free_port()),
        TC_MLLP_WEB_PORT=str(free_port()),
    )
    return t, env


async def backlog(visits: list[list[Hl7Message]], workdir: Path, profile: Path) -> None:
    """The messages on the inbound topic first (as the gateway writes them), then the worker."""
    from runtime.topics import ensure_topics
    from tests.integration.harness import EXE, produce

    t, env = path_env("backlog", workdir, profile)
    # All the worker's topics, the EHR ones included, with TC_PARTITIONS partitions.
    await ensure_topics(Settings.from_env({k: v for k, v in env.items() if k.startswith("TC_")}))
    raws = [m.raw for v in visits for m in v]
    await produce(
        env["TC_TOPIC_HL7_INBOUND"], [(m.visit.encode(), m.raw) for v in visits for m in v]
    )
    complete = join_expectation(visits)[0]
    t0 = time.monotonic()
    worker = Proc(
        [EXE, "worker"],
        env,
        workdir / "worker-backlog.log",
        f"http://127.0.0.1:{env['TC_WEB_PORT']}/health",
    )
    cpu0 = worker.cpu_s()
    try:
        times = await visit_times(t.visits, complete, timeout=900)
        cpu = worker.cpu_s() - cpu0
        parts = await visit_times(env["TC_TOPIC_EHR_PARTS"], len(raws), 60, "visit")
    finally:
        worker.stop()
    # From the first part the parse stage wrote to the last visit the join wrote: the worker's
    # start-up (faust, partition assignment) is not counted.
    first = min(ts for v in parts.values() for ts in v)
    last = max(ts for v in times.values() for ts in v)
    span = (last - first) / 1000
    print(
        f"worker backlog: {len(raws)} messages parsed and joined into {complete} visit events "
        f"in {span:.1f}s (first part -> last visit) = {len(raws) / span:,.0f} messages/s, "
        f"{complete / span:,.0f} visits/s; worker CPU {cpu / len(raws) * 1000:.2f} ms per "
        f"message (checks of the visits included); {time.monotonic() - t0:.1f}s from worker start"
    )


async def live(
    rounds: list[tuple[int, list[list[Hl7Message]]]], workdir: Path, profile: Path
) -> None:
    """A gateway and a worker; per round, N MLLP senders send every message of their visits and
    wait for each ACK. Latency: the ACK of the message that completed a visit -> its event."""
    from runtime.topics import ensure_topics
    from tests.integration.harness import EXE

    t, env = path_env("live", workdir, profile)
    await ensure_topics(Settings.from_env({k: v for k, v in env.items() if k.startswith("TC_")}))
    port = int(env["TC_MLLP_PORT"])
    worker = Proc(
        [EXE, "worker"],
        env,
        workdir / "worker-live.log",
        f"http://127.0.0.1:{env['TC_WEB_PORT']}/health",
    )
    gateway = Proc(
        [EXE, "mllp-gateway"],
        env,
        workdir / "gateway.log",
        f"http://127.0.0.1:{env['TC_MLLP_WEB_PORT']}/health",
    )
    try:
        # Warm-up: other visits through the whole path first, so that no round includes the
        # worker's first partition assignment.
        warm = traffic(20, seed=99)
        await send_mllp(port, warm, {})
        seen = join_expectation(warm)[0]
        await visit_times(t.visits, seen, timeout=300)
        for senders, visits in rounds:
            acked: dict[str, float] = {}
            n = senders
            complete = join_expectation(visits)[0]
            cpu0 = worker.cpu_s(), gateway.cpu_s()
            t0 = time.monotonic()
            collected = asyncio.create_task(visit_times(t.visits, seen + complete, 900))
            aa = sum(
                await asyncio.gather(*(send_mllp(port, visits[i::n], acked) for i in range(n)))
            )
            sending = time.monotonic() - t0
            times = await collected
            total = time.monotonic() - t0
            wcpu, gcpu = worker.cpu_s() - cpu0[0], gateway.cpu_s() - cpu0[1]
            seen += complete
            messages = sum(map(len, visits))
            if aa != messages:
                raise SystemExit(f"only {aa} of {messages} messages were AA'd")
            q = statistics.quantiles([min(times[v]) / 1000 - at for v, at in acked.items()], n=100)
            print(
                f"live, {senders:3d} MLLP sender(s): {messages} messages AA'd in {sending:5.1f}s = "
                f"{messages / sending:4,.0f} messages/s ({len(visits) / sending:3,.0f} visits/s); "
                f"last visit event {total - sending:4.1f}s after the last ACK; ACK of the "
                f"completing message -> visit event p50 {q[49] * 1000:5.0f} / p95 "
                f"{q[94] * 1000:5.0f} / p99 {q[98] * 1000:5.0f} ms; CPU per message: gateway "
                f"{gcpu / messages * 1000:.2f} ms, worker {wcpu / messages * 1000:.2f} ms"
            )
    finally:
        gateway.stop()
        worker.stop()


async def end_to_end(args: argparse.Namespace) -> None:
    from tests.integration.harness import BROKERS

    visits = traffic(args.visits, seed=43)
    complete, partial = join_expectation(visits)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()}; broker {BROKERS}; the broker, worker, gateway and senders share "
        "the machine"
    )
    print(
        f"traffic per run: {len(visits)} visits, {sum(map(len, visits))} messages; complete "
        f"visit events expected {complete} (the {partial} one-half visits wait "
        "TC_JOIN_WAIT_S=3600 and are not counted)"
    )
    counts = [int(n) for n in args.senders.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "demo-profile.toml"
        profile.write_text(demo_profile_text())
        await backlog(visits, Path(tmp), profile)
        # New visits each round (another seed): the join would take the same ones as resends.
        rounds = [(n, traffic(args.visits, seed=44 + i)) for i, n in enumerate(counts)]
        await live(rounds, Path(tmp), profile)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--visits", type=int, default=None, help="default 5000 (2000 with --e2e)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--e2e", action="store_true", help="on the broker: KAFKA_TEST_BROKERS")
    ap.add_argument("--senders", default="1,10", help="MLLP sender counts (default 1,10)")
    args = ap.parse_args()
    if args.e2e:
        args.visits = args.visits or 2000
        asyncio.run(end_to_end(args))
    else:
        args.visits = args.visits or 5000
        in_process(args)


if __name__ == "__main__":
    main()
