"""Real-broker test harness: unique topics per test, the worker as a real subprocess
(`therapy-compliance worker`), aiokafka as the test client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

BROKERS = os.environ.get("KAFKA_TEST_BROKERS", "127.0.0.1:19092")
EXE = str(Path(sys.executable).parent / "therapy-compliance")
#: The two ways to run the worker; they must behave the same (one Worker class, one app).
WORKER_COMMANDS = {
    "therapy-compliance": [EXE, "worker"],
    "faust": [str(Path(sys.executable).parent / "faust"), "-A", "streams.app", "worker"],
}


def broker_reachable() -> bool:
    host, port = BROKERS.split(",")[0].rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Topics:
    visits: str
    alerts: str
    checked: str
    deadletter: str
    status: str = ""
    notices: str = ""

    @classmethod
    def unique(cls, name: str) -> Topics:
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        return cls(
            f"t.{tag}.visits",
            f"t.{tag}.alerts",
            f"t.{tag}.checked",
            f"t.{tag}.dl",
            f"t.{tag}.status",
            f"t.{tag}.notices",
        )

    def env(self) -> dict[str, str]:
        out = {
            "TC_TOPIC_VISITS": self.visits,
            "TC_TOPIC_ALERTS": self.alerts,
            "TC_TOPIC_CHECKED": self.checked,
            "TC_TOPIC_DEADLETTER": self.deadletter,
        }
        if self.status:
            out["TC_TOPIC_STATUS"] = self.status
        if self.notices:
            out["TC_TOPIC_NOTICES"] = self.notices
        return out


@dataclass
class Worker:
    """A `therapy-compliance worker` subprocess."""

    topics: Topics
    workdir: Path
    app_id: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    command: list[str] = field(default_factory=lambda: WORKER_COMMANDS["therapy-compliance"])

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
        env.update(self.topics.env())
        env.update(
            {
                "TC_BROKERS": BROKERS,
                "TC_APP_ID": self.app_id,
                "TC_WEB_PORT": str(self.port),
                # One state directory per worker (RocksDB locks it), kept across its restarts.
                "TC_DATA_DIR": str(self.workdir / f"data-{self.app_id}-{self.port}"),
                "TC_PARTITIONS": "4",
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.app_id}-{self.port}.log"

    def start(self, wait_healthy: bool = True, timeout: float = 60) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the subprocess
        log.write(f"\n===== start {self.starts} =====\n".encode())
        self.proc = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        if wait_healthy:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            try:
                status, body = self.get("/health")
                last = body
                if status == 200:
                    return orjson.loads(body)  # type: ignore[no-any-return]
            except OSError as exc:
                last = exc
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy in {timeout}s ({last!r}):\n{self.tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def health_status(self) -> int | None:
        """HTTP status of /health, None while the web server is not up."""
        try:
            return self.get("/health")[0]
        except OSError:
            return None

    def processed(self) -> int:
        """Records the worker has handled so far (its visits_processed_total, all statuses)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("therapy_compliance_visits_processed_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def rss_mb(self) -> float:
        """Resident memory of the worker process in MiB (0 when it is gone)."""
        try:
            assert self.proc is not None
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AssertionError):
            pass
        return 0.0

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200
        return body.decode()

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"worker ignored signal {sig} for {timeout}s:\n{self.tail()}"
            ) from None

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def broker_pid(brokers: str = BROKERS) -> int:
    """Pid of the process listening on the (first) broker's port, from /proc (Linux)."""
    port = int(brokers.split(",")[0].rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(cols[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
    raise AssertionError(f"no process listens on port {port}")


async def committed_offsets(group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offsets for `topic` (partition -> next offset)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic}


async def create_topics(t: Topics, partitions: int = 4) -> None:
    """Create a test's topics as the worker would (so a producer never auto-creates them with
    the broker's default of one partition)."""
    from runtime.settings import Settings
    from runtime.topics import ensure_topics

    await ensure_topics(
        Settings.from_env({**t.env(), "TC_BROKERS": BROKERS, "TC_PARTITIONS": str(partitions)})
    )


async def produce(
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    brokers: str = BROKERS,
    **kwargs: Any,
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers,
        acks="all",
        linger_ms=5,
        max_request_size=16 * 1024 * 1024,
        **kwargs,
    )
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def consume(
    topics: list[str],
    until: int | Callable[[list[Any]], bool],
    timeout: float = 60,
    idle_after: float | None = None,
    brokers: str = BROKERS,
    **client: Any,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read the topics from the beginning until `until` records arrived, or until the predicate
    `until(records)` holds (or timeout); with idle_after, keep reading until no record came for
    that long (to catch late duplicates)."""

    def done(recs: list[Any]) -> bool:
        return until(recs) if callable(until) else len(recs) >= until

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=brokers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        **client,
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    last_seen = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = [r for recs in batch.values() for r in recs]
            if got:
                out.extend(got)
                last_seen = time.monotonic()
            if done(out) and (idle_after is None or time.monotonic() - last_seen >= idle_after):
                break
    finally:
        await consumer.stop()
    return out


def by_topic(records: list[ConsumerRecord[bytes, bytes]], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.topic == topic and r.value is not None]


def models(records: list[ConsumerRecord[bytes, bytes]], topic: str, model: type[M]) -> list[M]:
    """Records of a topic parsed with the strict contract model (from JSON, as consumers do)."""
    return [
        model.model_validate_json(r.value)
        for r in records
        if r.topic == topic and r.value is not None
    ]
