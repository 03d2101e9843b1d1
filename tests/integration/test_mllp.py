"""The MLLP gateway as a real subprocess (`therapy-compliance mllp-gateway`) on the real broker:
AA means the raw message is on the inbound topic (once per send, keyed by patient_ref), a broker
outage turns AAs into ARs and loses nothing that was AA'd, rejections get AE and an
EhrDeadLetter, TLS, start-up without a broker, and no patient data in logs, metrics or details."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ehr import mllp_frame
from schemas.ehr_deadletter import EhrDeadLetter
from synthetic.hl7 import Hl7VisitGenerator
from tests.integration.harness import BROKERS, EXE, Topics, broker_pid, consume, free_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio]
ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests/fixtures/ehr"
KEY = "itest-key-0123456789abcdef"


@dataclass
class GatewayProc:
    """A `therapy-compliance mllp-gateway` subprocess, configured like the harness's Worker."""

    topics: Topics
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
        env.update(
            {
                "TC_BROKERS": BROKERS,
                "TC_EHR_PATIENT_KEY": KEY,
                "TC_EHR_PROFILE": str(ROOT / "ehr/profile.toml"),  # required with the key
                "TC_TOPIC_HL7_INBOUND": self.topics.visits,
                "TC_TOPIC_EHR_DEADLETTER": self.topics.deadletter,
                "TC_PARTITIONS": "4",
                "TC_MLLP_PORT": str(self.port),
                "TC_MLLP_WEB_PORT": str(self.web_port),
                "TC_MLLP_ACK_TIMEOUT_S": "2",
                "TC_LOG_LEVEL": "debug",
                "TC_SHUTDOWN_TIMEOUT_S": "15",
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.port}.log"

    def start(self, wait: bool = True) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the subprocess
        self.proc = subprocess.Popen(
            [EXE, "mllp-gateway"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"gateway exited:\n{self.log()}"
                if self.get("/health")[0] == 200:
                    return
                time.sleep(0.2)
            raise AssertionError(f"gateway not healthy:\n{self.log()}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            url = f"http://127.0.0.1:{self.web_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"gateway ignored SIGTERM:\n{self.log()}") from None


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProc] = []

    def make(t: Topics, **env: str) -> GatewayProc:
        g = GatewayProc(t, tmp_path, dict(env))
        started.append(g)
        return g

    yield make
    for g in started:
        g.stop()


@dataclass(frozen=True)
class Exchange:
    control_id: str
    code: str
    at: float


def msa(block: bytes) -> tuple[str, str, str]:
    for seg in block.strip(b"\x0b\x1c\r").decode("ascii").split("\r"):
        f = [*seg.split("|"), "", "", ""]
        if f[0] == "MSA":
            return f[1], f[2], f[3]
    raise AssertionError(f"no MSA in {block!r}")


async def send_all(
    port: int,
    messages: list[bytes],
    resend_on_ar: bool = False,
    tls: ssl.SSLContext | None = None,
    allow_close: bool = False,
    pause: float = 0.0,
) -> list[Exchange]:
    """One sender: each message, then its ACK (as MLLP senders do); on AR optionally resend.
    `allow_close`: the gateway may close the connection (a stop): return what was answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    out: list[Exchange] = []
    try:
        await _exchange(reader, writer, messages, resend_on_ar, out, pause)
    except (asyncio.IncompleteReadError, ConnectionError):
        if not allow_close:
            raise
    finally:
        writer.close()
    return out


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    messages: list[bytes],
    resend_on_ar: bool,
    out: list[Exchange],
    pause: float,
) -> None:
    for raw in messages:
        await asyncio.sleep(pause)
        while True:
            writer.write(mllp_frame(raw))
            await writer.drain()
            code, cid, _text = msa(await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 60))
            out.append(Exchange(cid, code, time.monotonic()))
            if code == "AR" and resend_on_ar:
                await asyncio.sleep(0.3)
                continue
            break


def control_id(raw: bytes) -> str:
    return raw.split(b"\r", 1)[0].decode().split("|")[9]


def expected_key(raw: bytes) -> bytes:
    """patient_ref from PID-3 (CX.1, CX.4), computed here: P- + HMAC-SHA256(key, ...)[:20]."""
    pid = next(s for s in raw.decode().split("\r") if s.startswith("PID|"))
    cx = pid.split("|")[3].split("~")[0].split("^")
    msg = f"{cx[0]}\x1f{cx[3]}".encode()
    return ("P-" + hmac.new(KEY.encode(), msg, hashlib.sha256).hexdigest()[:20]).encode()


def medicare_messages(seed: int, n: int) -> list[bytes]:
    """n messages of the demo generator that the shipped profile accepts (no commercial DFT)."""
    out: list[bytes] = []
    for m in Hl7VisitGenerator(seed=seed, patients=400).messages(4 * n):
        if m.kind == "documentation" or m.payer_kind == "medicare":
            out.append(m.raw)
        if len(out) == n:
            return out
    raise AssertionError("generator gave too few messages")


async def test_100_concurrent_senders_every_aa_is_on_the_topic_once_with_its_key(
    gateways: Any, report: Any
) -> None:
    t = Topics.unique("mllp-load")
    gw: GatewayProc = gateways(t)
    gw.start()
    per_sender = [list(Hl7VisitGenerator(seed=s).messages(6))[:6] for s in range(100)]
    raws = {control_id(m.raw): m.raw for batch in per_sender for m in batch}
    started = time.monotonic()
    results = await asyncio.gather(
        *(send_all(gw.port, [m.raw for m in batch]) for batch in per_sender)
    )
    elapsed = time.monotonic() - started
    answers = [x for r in results for x in r]
    codes = Counter(x.code for x in answers)
    assert codes["AR"] == 0 and codes["AA"] > 300 and codes["AE"] > 0, codes
    aa = Counter(x.control_id for x in answers if x.code == "AA")
    ae = Counter(x.control_id for x in answers if x.code == "AE")
    recs = await consume(
        [t.visits, t.deadletter],
        until=lambda rs: len(rs) >= len(answers),
        timeout=60,
        idle_after=1.5,
    )
    inbound = [r for r in recs if r.topic == t.visits]
    on_topic = Counter(control_id(r.value) for r in inbound)
    assert on_topic == aa  # every AA'd message exactly once per send, nothing else
    for r in inbound:
        assert r.value == raws[control_id(r.value)] and r.key == expected_key(r.value)
    letters = [EhrDeadLetter.model_validate_json(r.value) for r in recs if r.topic == t.deadletter]
    assert Counter(d.source.control_id for d in letters) == ae
    assert {d.reason for d in letters} == {"unmapped_code"}  # the demo's commercial payers
    # Each connection's messages of one patient are in send order within their partition.
    offset = {(control_id(r.value)): (r.partition, r.offset) for r in inbound}
    for batch in per_sender:
        by_key: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for m in batch:
            if control_id(m.raw) in offset:
                by_key[expected_key(m.raw)].append(offset[control_id(m.raw)])
        for positions in by_key.values():
            assert positions == sorted(positions) and len({p for p, _ in positions}) == 1
    report(f"mllp: 100 senders x 6 messages in {elapsed:.1f}s ({len(answers) / elapsed:.0f}/s)")


def local_kafka(command: str) -> subprocess.CompletedProcess[str]:
    """ops/kafka/local-kafka with this process's KAFKA_* environment (the test's own broker)."""
    return subprocess.run(
        [str(ROOT / "ops/kafka/local-kafka"), command],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def ephemeral_ports() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


async def broker_outage(seconds: float) -> tuple[str, float, float]:
    """Take the test's broker away for `seconds`: `local-kafka stop` then `start` (as
    test_reliability does). When the broker's port lies in Linux's ephemeral range (39192 does:
    32768-60999), a client reconnecting to 127.0.0.1:<port> while nothing listens there can be
    handed that very port as its source port and connect to itself, and the broker then cannot
    bind its port again; there the broker is frozen instead (SIGSTOP/SIGCONT: its port stays
    bound, nothing is acknowledged). Returns how, and when it went away and came back."""
    port = int(BROKERS.split(",")[0].rsplit(":", 1)[1])
    if port in ephemeral_ports():
        pid = broker_pid()
        os.kill(pid, signal.SIGSTOP)
        gone = time.monotonic()
        try:
            await asyncio.sleep(seconds)
        finally:
            back = time.monotonic()
            os.kill(pid, signal.SIGCONT)
        return "SIGSTOP/SIGCONT", gone, back
    assert (await asyncio.to_thread(local_kafka, "stop")).returncode == 0
    gone = time.monotonic()
    await asyncio.sleep(seconds)
    back = time.monotonic()
    started = await asyncio.to_thread(local_kafka, "start")
    assert started.returncode == 0, started.stderr[-2000:]
    return "stop/start", gone, back


async def test_broker_stopped_mid_stream_no_aa_for_unwritten_messages(
    gateways: Any, report: Any
) -> None:
    t = Topics.unique("mllp-outage")
    gw: GatewayProc = gateways(t)
    gw.start()
    # 20 senders at ~10 messages/s each for at least 4 s: the outage starts mid-stream.
    batches = [medicare_messages(seed=200 + s, n=40) for s in range(20)]
    senders = asyncio.gather(*(send_all(gw.port, b, resend_on_ar=True, pause=0.1) for b in batches))
    await asyncio.sleep(1.0)
    # > 2 x TC_MLLP_ACK_TIMEOUT_S: the senders get ARs meanwhile.
    how, stopped_at, restart_at = await broker_outage(5)
    results = await asyncio.wait_for(senders, 150)
    answers = [x for r in results for x in r]
    codes = Counter(x.code for x in answers)
    assert codes["AR"] > 0, codes  # the gateway stopped acknowledging
    # Nothing could be written while the broker was down: no AA in that window (1 s margin
    # for ACKs of writes the broker acknowledged just before it went away).
    down = [x for x in answers if stopped_at + 1 < x.at < restart_at and x.code == "AA"]
    assert down == []
    aa = Counter(x.control_id for x in answers if x.code == "AA")
    sends = Counter(x.control_id for x in answers)
    assert len(aa) == sum(len(b) for b in batches)  # every message got its AA eventually
    recs = await consume([t.visits], until=lambda rs: len(rs) >= len(aa), timeout=60, idle_after=2)
    on_topic = Counter(control_id(r.value) for r in recs)
    # Every AA'd message is there; a copy whose AR was a timeout may have landed too, but never
    # more copies than sends (the idempotent producer adds no duplicates of its own).
    for cid in aa:
        assert 1 <= on_topic[cid] <= sends[cid], (cid, on_topic[cid], sends[cid])
    assert set(on_topic) == set(aa)
    assert gw.proc is not None and gw.proc.poll() is None
    assert gw.get("/health")[0] == 200
    dupes = sum(on_topic.values()) - len(aa)
    report(
        f"mllp broker outage ({how}, {restart_at - stopped_at:.1f}s): {dict(codes)} answers, "
        f"{dupes} extra copies of AR'd sends on the topic"
    )


MARKERS = ["ZZFAMILY", "ZZGIVEN", "ZZMRN77", "19230405", "ZZSTREET", "ZZCITY", "5559876543"]
MARKERS += ["987-65-4320", "ZZPID2X", "ZZACCT88", "ZZALIAS", "ZZMOTHER"]
PID = (
    "PID|1|ZZPID2X|ZZMRN77^^^CLINIC01^MR||ZZFAMILY^ZZGIVEN^ZZMIDDLE||19230405|F|ZZALIAS^X||"
    "1 ZZSTREET^^ZZCITY^ST^00000||(555)987-6543^^^^^555^9876543|5559876543||||ZZACCT88|"
    "987-65-4320|ZZDL99^ST||||||||||||||ZZMOTHER"
)


def with_markers(raw: bytes) -> bytes:
    return "\r".join(PID if s.startswith("PID|") else s for s in raw.decode().split("\r")).encode()


async def test_rejections_get_ae_and_a_dead_letter_and_no_pid_content_leaks(
    gateways: Any,
) -> None:
    t = Topics.unique("mllp-phi")
    gw: GatewayProc = gateways(t)
    gw.start()
    good = with_markers((FIX / "dft_p03_pt_v1001.hl7").read_bytes())
    missing_visit = good.replace(b"V1001^^^CLINIC01^VN", b"")
    mixed = with_markers((FIX / "dft_p03_charge_and_credit.hl7").read_bytes())
    answers = await send_all(gw.port, [good, missing_visit, mixed])
    assert [(x.code, x.control_id) for x in answers] == [
        ("AA", "DFT-1001-1"),
        ("AE", "DFT-1001-1"),
        ("AE", "DFT-1001-3"),
    ]
    # Framing faults on another connection: stray bytes, a block cut by the close.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"ZZFAMILY stray " + mllp_frame(good) + b"\x0b" + good[:200])
    await writer.drain()
    assert msa(await reader.readuntil(b"\x1c\r"))[0] == "AA"
    writer.close()
    recs = await consume([t.visits, t.deadletter], until=6, timeout=30, idle_after=1)
    letters = {
        d.reason: d
        for d in (
            EhrDeadLetter.model_validate_json(r.value) for r in recs if r.topic == t.deadletter
        )
    }
    assert set(letters) == {"missing_field", "unsupported_transaction", "bad_framing"}
    assert len([r for r in recs if r.topic == t.deadletter]) == 4
    miss = letters["missing_field"]
    assert (miss.source.via, miss.source.control_id, miss.format) == ("mllp", "DFT-1001-1", "hl7v2")
    assert base64.b64decode(miss.value_b64 or "") == missing_visit
    assert "PV1-19" in miss.detail
    assert [r.value for r in recs if r.topic == t.visits] == [good, good]
    status, metrics = gw.get("/metrics")
    assert status == 200
    assert b'therapy_compliance_mllp_messages_total{ack="AE",type="DFT^P03"} 2.0' in metrics
    assert b'therapy_compliance_mllp_dead_letters_total{reason="bad_framing"} 2.0' in metrics
    assert gw.stop() == 0
    text = (
        gw.log()
        + metrics.decode()
        + "".join(
            EhrDeadLetter.model_validate_json(r.value).model_dump_json(exclude={"value_b64"})
            for r in recs
            if r.topic == t.deadletter
        )
    )
    assert "DEBUG" in text and "DFT-1001-1" in text  # the log was at debug level, ids logged
    for marker in MARKERS:
        assert marker not in text, marker


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "gw.crt", tmp / "gw.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_tls_listener_and_the_demo_sender_over_tls(gateways: Any, tmp_path: Path) -> None:
    t = Topics.unique("mllp-tls")
    cert, key = self_signed(tmp_path)
    tls_env = {"TC_MLLP_CERTFILE": str(cert), "TC_MLLP_KEYFILE": str(key)}
    gw: GatewayProc = gateways(t, **tls_env)
    gw.start()
    ctx = ssl.create_default_context(cafile=str(cert))
    (x,) = await send_all(gw.port, [(FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()], tls=ctx)
    assert (x.code, x.control_id) == ("AA", "MDM-1001-1")
    demo = await asyncio.to_thread(
        subprocess.run,
        [EXE, "demo-hl7", "--count", "10", "--seed", "4"],
        env={**gw.env, **tls_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "AR 0" in demo.stdout and "AA " in demo.stdout
    # Plain TCP to the TLS port: no ACK, just a closed connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(mllp_frame(b"MSH|^~\\&|X"))
    await writer.drain()
    assert b"MSA" not in await asyncio.wait_for(reader.read(), 10)
    writer.close()


async def test_no_broker_at_start_exits_69_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    env.update(
        TC_BROKERS=f"127.0.0.1:{free_port()}",
        TC_EHR_PATIENT_KEY=KEY,
        TC_EHR_PROFILE=str(ROOT / "ehr/profile.toml"),
        TC_STARTUP_WAIT_S="0",
        TC_MLLP_PORT=str(free_port()),
        TC_MLLP_WEB_PORT=str(free_port()),
    )
    proc = await asyncio.to_thread(
        subprocess.run, [EXE, "mllp-gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 69, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("therapy-compliance")]
    assert len(lines) == 1 and "cannot connect to Kafka" in lines[0]
    del env["TC_EHR_PROFILE"]  # the EHR path on without a profile: one line, exit 2
    proc = await asyncio.to_thread(
        subprocess.run, [EXE, "mllp-gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "needs TC_EHR_PROFILE" in proc.stderr, proc.stderr
    del env["TC_EHR_PATIENT_KEY"]
    proc = await asyncio.to_thread(
        subprocess.run, [EXE, "mllp-gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "TC_EHR_PATIENT_KEY" in proc.stderr


async def test_sigterm_finishes_the_message_in_flight_then_exits_0(gateways: Any) -> None:
    t = Topics.unique("mllp-stop")
    gw: GatewayProc = gateways(t)
    gw.start()
    raws = medicare_messages(seed=77, n=200)
    # At least 4 s of traffic (20 ms between messages): the stop comes mid-stream.
    sender = asyncio.create_task(send_all(gw.port, raws, allow_close=True, pause=0.02))
    await asyncio.sleep(1.0)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(gw.proc.wait, 30)
    assert code == 0, gw.log()
    answers = await sender
    assert 0 < len(answers) < len(raws)  # stopped mid-stream, after its last answer
    assert {x.code for x in answers} == {"AA"}
    recs = await consume([t.visits], until=len(answers), timeout=30, idle_after=1)
    assert Counter(control_id(r.value) for r in recs) == Counter(x.control_id for x in answers)
    assert "stopped in" in gw.log()
