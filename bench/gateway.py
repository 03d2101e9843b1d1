"""MLLP gateway benchmark on the local broker (not a test). For each sender count N, N concurrent
MLLP senders each send their share of the messages one at a time and wait for each ACK (as
interface engines do); prints messages/s, ACK latency percentiles and the gateway's CPU and RSS.

Baseline: the same raw messages produced straight to Kafka with the gateway's producer settings
(acks=all, idempotent), N concurrent tasks each awaiting every write: the broker round-trip the
gateway cannot beat.

    KAFKA_PORT=39192 KAFKA_CONTROLLER_PORT=39193 KAFKA_STATE_DIR=/tmp/mllp-kafka \
        ops/kafka/local-kafka start
    KAFKA_TEST_BROKERS=127.0.0.1:39192 .venv/bin/python bench/gateway.py \
        [--messages 20000] [--senders 1,10,100]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer

from ehr import mllp_frame
from synthetic.hl7 import Hl7VisitGenerator
from tests.integration.harness import BROKERS, EXE, Topics, free_port

KEY = "bench-key-0123456789abcdef"


def messages(n: int, seed: int = 42) -> list[bytes]:
    """Charges and notes the shipped profile accepts (commercial DFTs would be AE)."""
    out: list[bytes] = []
    for m in Hl7VisitGenerator(seed=seed, patients=400).messages(n):
        if m.kind == "documentation" or m.payer_kind == "medicare":
            out.append(m.raw)
        if len(out) == n:
            break
    return out


class Gateway:
    def __init__(self, workdir: Path) -> None:
        self.port, self.web = free_port(), free_port()
        self.topics = Topics.unique("bench-mllp")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
        env.update(
            TC_BROKERS=BROKERS,
            TC_EHR_PATIENT_KEY=KEY,
            TC_TOPIC_HL7_INBOUND=self.topics.visits,
            TC_TOPIC_EHR_DEADLETTER=self.topics.deadletter,
            TC_PARTITIONS="4",
            TC_MLLP_PORT=str(self.port),
            TC_MLLP_WEB_PORT=str(self.web),
            TC_LOG_LEVEL="warning",
        )
        self.log = open(workdir / "gateway.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [EXE, "mllp-gateway"], env=env, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.web}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gateway did not start; see gateway.log")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


async def mllp_sender(port: int, batch: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    aa = 0
    try:
        for raw in batch:
            t = time.perf_counter()
            writer.write(mllp_frame(raw))
            await writer.drain()
            ack = await reader.readuntil(b"\x1c\r")
            latencies.append(time.perf_counter() - t)
            aa += b"MSA|AA|" in ack
    finally:
        writer.close()
    return aa


async def run_gateway(gw: Gateway, raws: list[bytes], senders: int) -> dict[str, float]:
    batches = [raws[i::senders] for i in range(senders)]
    latencies: list[float] = []
    cpu0, t0 = gw.cpu_s(), time.perf_counter()
    aa = sum(await asyncio.gather(*(mllp_sender(gw.port, b, latencies) for b in batches)))
    elapsed = time.perf_counter() - t0
    cpu = gw.cpu_s() - cpu0
    if aa != len(raws):
        raise SystemExit(f"only {aa} of {len(raws)} messages were AA'd")
    return {"rate": len(raws) / elapsed, "cpu": cpu / elapsed, **percentiles(latencies)}


async def run_baseline(raws: list[bytes], senders: int) -> dict[str, float]:
    topic = Topics.unique("bench-mllp-base").visits
    producer = AIOKafkaProducer(
        bootstrap_servers=BROKERS, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    latencies: list[float] = []

    async def one(batch: list[bytes]) -> None:
        for raw in batch:
            t = time.perf_counter()
            await (await producer.send(topic, raw, key=raw[-20:]))
            latencies.append(time.perf_counter() - t)

    try:
        await producer.send_and_wait(topic, b"warm-up")
        t0 = time.perf_counter()
        await asyncio.gather(*(one(raws[i::senders]) for i in range(senders)))
        elapsed = time.perf_counter() - t0
    finally:
        await producer.stop()
    return {"rate": len(raws) / elapsed, **percentiles(latencies)}


def percentiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100)
    return {"p50": q[49] * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--senders", default="1,10,100")
    args = ap.parse_args()
    raws = messages(args.messages)
    counts = [int(s) for s in args.senders.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()}; broker {BROKERS}"
    )
    print(
        f"messages: {len(raws)} (DFT^P03 and MDM^T02, mean {statistics.mean(map(len, raws)):.0f} bytes)"
    )
    print(
        "senders | gateway msg/s | ACK p50 / p95 / p99 ms | gateway CPU | baseline msg/s | write p50 / p99 ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp))
        try:
            await run_gateway(
                gw, raws[:500], 10
            )  # warm-up: connections, metadata, JIT-free CPython caches
            for n in counts:
                g = await run_gateway(gw, raws, n)
                b = await run_baseline(raws, n)
                print(
                    f"{n:7d} | {g['rate']:13,.0f} | {g['p50']:6.1f} / {g['p95']:6.1f} / {g['p99']:6.1f} "
                    f"| {g['cpu'] * 100:10.0f}% | {b['rate']:14,.0f} | {b['p50']:6.1f} / {b['p99']:6.1f}"
                )
            print(f"gateway peak RSS: {gw.rss_mb():.0f} MiB")
        finally:
            gw.stop()


if __name__ == "__main__":
    asyncio.run(main())
