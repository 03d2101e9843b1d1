"""The gateway's connection handler on a real local socket, with a fake Kafka producer: framing
faults, ACK content (HL7 v2.5.1 MSA/ERR, tables 0008 and 0357), AA only once the write is
acknowledged, AR when it is not, dead letters, a graceful stop, and no patient data in logs,
metrics or dead-letter details."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from prometheus_client import generate_latest

from gateway.connection import Connection
from gateway.handler import MessageHandler
from gateway.metrics import GatewayMetrics
from runtime.settings import GatewaySettings
from schemas.ehr_deadletter import EhrDeadLetter

pytestmark = pytest.mark.timeout(30)
FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
KEY = "unit-key-0123456789abcdef"
INBOUND, DEADLETTER = "t.inbound", "t.dl"
SB, EB, CR = b"\x0b", b"\x1c", b"\r"


def fixture(name: str) -> bytes:
    return (FIX / name).read_bytes()


def frame(msg: bytes) -> bytes:
    return SB + msg + EB + CR


def expected_patient_ref(mrn: str, authority: str) -> str:
    # docs/integration-hl7.md: P- + HMAC-SHA256(key, CX.1 US CX.4)[:20], computed here directly.
    msg = f"{mrn}\x1f{authority}".encode()
    return "P-" + hmac.new(KEY.encode(), msg, hashlib.sha256).hexdigest()[:20]


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    future: asyncio.Future[Any]


@dataclass
class FakeProducer:
    """aiokafka's send(): returns a delivery future. `mode`: ok (acknowledged at once), hold
    (left pending for the test to resolve), fail (delivery fails), fail_deadletter (only the
    dead-letter topic fails), block (send() itself never returns, as with a full buffer),
    letter_limit (the dead-letter topic refuses larger records as too large, as a broker
    whose limit was lowered after the gateway read it)."""

    mode: str = "ok"
    sent: list[Sent] = field(default_factory=list)
    letter_limit: int | None = None

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        if self.mode == "block":
            await asyncio.Event().wait()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(topic, key, value, fut))
        if self.mode == "fail" or (self.mode == "fail_deadletter" and topic == DEADLETTER):
            fut.set_exception(KafkaConnectionError("broker gone"))
        elif topic == DEADLETTER and self.letter_limit and len(value) > self.letter_limit:
            fut.set_exception(MessageSizeTooLargeError())
        elif self.mode != "hold":
            fut.set_result(None)
        return fut

    def stored(self, topic: str) -> list[Sent]:
        """Records the broker acknowledged."""
        return [
            s
            for s in self.sent
            if s.topic == topic and s.future.done() and not s.future.cancelled()
            if s.future.exception() is None
        ]

    def dead_letters(self) -> list[EhrDeadLetter]:
        return [EhrDeadLetter.model_validate_json(s.value) for s in self.stored(DEADLETTER)]


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ack(self, timeout: float = 5) -> list[list[str]]:
        """The next ACK: MLLP-framed, ASCII; segments split into fields."""
        block = await asyncio.wait_for(self.reader.readuntil(EB + CR), timeout)
        assert block[:1] == SB
        text = block[1:-2].decode("ascii")
        assert text.endswith("\r")
        return [seg.split("|") for seg in text.split("\r")[:-1]]

    async def raw_ack(self, timeout: float = 5) -> bytes:
        block = await asyncio.wait_for(self.reader.readuntil(EB + CR), timeout)
        return block[1:-2]

    async def nothing_within(self, seconds: float) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected bytes from the gateway: {data!r}")

    async def closed_by_gateway(self, timeout: float = 5) -> bool:
        return await asyncio.wait_for(self.reader.read(1), timeout) == b""

    def close(self) -> None:
        self.writer.close()


@dataclass
class Gateway:
    producer: FakeProducer
    handler: MessageHandler
    metrics: GatewayMetrics
    port: int
    connections: list[Connection]

    async def connect(self) -> Client:
        return Client(*await asyncio.open_connection("127.0.0.1", self.port))

    def metrics_text(self) -> str:
        return generate_latest(self.metrics.registry).decode()


def settings(**env: str) -> GatewaySettings:
    base = {
        "TC_EHR_PATIENT_KEY": KEY,
        "TC_TOPIC_HL7_INBOUND": INBOUND,
        "TC_TOPIC_EHR_DEADLETTER": DEADLETTER,
        "TC_MLLP_ACK_TIMEOUT_S": "0.5",
        "TC_MLLP_IDLE_TIMEOUT_S": "2",
        "TC_MLLP_MAX_BYTES": "4096",
        "TC_DEADLETTER_MAX_BYTES": "4000000",
    }
    return GatewaySettings.from_env({**base, **env})


@contextlib.asynccontextmanager
async def running(
    mode: str = "ok", deadletter_limit: int | None = None, **env: str
) -> AsyncIterator[Gateway]:
    s = settings(**env)
    producer, metrics = FakeProducer(mode), GatewayMetrics()
    handler = MessageHandler(
        s, s.ehr_config(), producer, metrics, deadletter_limit=deadletter_limit
    )
    conns: list[Connection] = []

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(
            handler,
            reader,
            writer,
            cid=len(conns) + 1,
            idle_timeout_s=s.mllp_idle_timeout_s,
            metrics=metrics,
        )
        conn.task = asyncio.current_task()
        conns.append(conn)
        await conn.run()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Gateway(producer, handler, metrics, port, conns)
    finally:
        server.close()
        for c in conns:
            if c.task is not None:
                c.task.cancel()


def msa(ack: list[list[str]]) -> list[str]:
    (seg,) = [s for s in ack if s[0] == "MSA"]
    return seg


def errs(ack: list[list[str]]) -> list[list[str]]:
    return [s for s in ack if s[0] == "ERR"]


def strict_251(ack: bytes) -> None:
    parse_message(
        ack.decode("ascii"), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT
    ).validate()


# ---- accepted messages ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_charge_is_written_as_received_keyed_by_patient_ref_then_aa() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    async with running() as gw:
        c = await gw.connect()
        await c.send(frame(raw))
        ack_bytes = await c.raw_ack()
        strict_251(ack_bytes)
        ack = [s.split("|") for s in ack_bytes.decode().split("\r")[:-1]]
        # MSA-1 AA (table 0008), MSA-2 = the sender's MSH-10; MSH-9 ACK^<trigger>^ACK.
        assert msa(ack)[:3] == ["MSA", "AA", "DFT-1001-1"] and errs(ack) == []
        assert ack[0][8] == "ACK^P03^ACK"
        (rec,) = gw.producer.stored(INBOUND)
        assert rec.value == raw
        assert rec.key == expected_patient_ref("MRN12345", "CLINIC01").encode()
        assert gw.producer.stored(DEADLETTER) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["dft_p03_utf8.hl7", "dft_p03_latin1.hl7"])
async def test_non_ascii_with_msh18_is_accepted_and_the_bytes_stay_unchanged(name: str) -> None:
    raw = fixture(name)
    assert any(b > 0x7F for b in raw)
    async with running() as gw:
        c = await gw.connect()
        await c.send(frame(raw))
        ack = await c.ack()
        assert msa(ack)[1] == "AA"
        assert [r.value for r in gw.producer.stored(INBOUND)] == [raw]


@pytest.mark.asyncio
async def test_a_frame_split_across_reads() -> None:
    raw = fixture("mdm_t02_pt_daily_v1001.hl7")
    data = frame(raw)
    async with running() as gw:
        c = await gw.connect()
        for part in (data[:1], data[1:50], data[50:-1], data[-1:]):
            await c.send(part)
            await asyncio.sleep(0.02)  # separate TCP reads on the gateway's side
        assert msa(await c.ack())[:3] == ["MSA", "AA", "MDM-1001-1"]
        assert [r.value for r in gw.producer.stored(INBOUND)] == [raw]


@pytest.mark.asyncio
async def test_several_messages_in_one_read_are_answered_in_order() -> None:
    names = ["dft_p03_pt_v1001.hl7", "mdm_t02_pt_daily_v1001.hl7", "oru_r01_pt_minutes_v1001.hl7"]
    async with running() as gw:
        c = await gw.connect()
        await c.send(b"".join(frame(fixture(n)) for n in names))
        ids = [msa(await c.ack())[2] for _ in names]
        assert ids == ["DFT-1001-1", "MDM-1001-1", "ORU-1001-1"]
        assert [r.value for r in gw.producer.stored(INBOUND)] == [fixture(n) for n in names]


# ---- AA only after the broker acknowledged ------------------------------------------------


@pytest.mark.asyncio
async def test_no_aa_before_the_write_is_acknowledged() -> None:
    async with running(mode="hold", TC_MLLP_ACK_TIMEOUT_S="5") as gw:
        c = await gw.connect()
        await c.send(frame(fixture("dft_p03_pt_v1001.hl7")))
        assert await c.nothing_within(0.5)  # the write is pending: nothing on the socket
        (pending,) = gw.producer.sent
        assert not pending.future.done()
        pending.future.set_result(None)
        assert msa(await c.ack())[1] == "AA"


@pytest.mark.asyncio
async def test_ar_when_the_write_fails() -> None:
    async with running(mode="fail") as gw:
        c = await gw.connect()
        await c.send(frame(fixture("dft_p03_pt_v1001.hl7")))
        ack_bytes = await c.raw_ack()
        strict_251(ack_bytes)
        ack = [s.split("|") for s in ack_bytes.decode().split("\r")[:-1]]
        # AR: rejected for a reason unrelated to content (table 0008); ERR-3 207 (table 0357).
        assert msa(ack)[:2] == ["MSA", "AR"] and msa(ack)[2] == "DFT-1001-1"
        assert msa(ack)[3].startswith("not stored, resend")
        assert [e[3] for e in errs(ack)] == ["207^Application internal error^HL70357"]
        assert gw.producer.stored(INBOUND) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["hold", "block"])
async def test_ar_when_the_write_is_not_acknowledged_in_time(mode: str) -> None:
    async with running(mode=mode, TC_MLLP_ACK_TIMEOUT_S="0.3") as gw:
        c = await gw.connect()
        await c.send(frame(fixture("dft_p03_pt_v1001.hl7")))
        ack = await c.ack()
        assert msa(ack)[1] == "AR" and "did not acknowledge within 0.3s" in msa(ack)[3]
        assert gw.handler.health.failing_since is not None
        # The connection stays usable: the sender resends on it.
        gw.producer.mode = "ok"
        await c.send(frame(fixture("dft_p03_pt_v1001.hl7")))
        assert msa(await c.ack())[1] == "AA"
        assert gw.handler.health.failing_since is None


# ---- rejections ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_rejected_message_gets_ae_with_err_and_a_dead_letter() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7").replace(b"V1001^^^CLINIC01^VN", b"")
    async with running() as gw:
        c = await gw.connect()
        await c.send(frame(raw))
        ack_bytes = await c.raw_ack()
        strict_251(ack_bytes)
        ack = [s.split("|") for s in ack_bytes.decode().split("\r")[:-1]]
        assert msa(ack)[:3] == ["MSA", "AE", "DFT-1001-1"]
        assert msa(ack)[3].startswith("missing_field: PV1-19")
        # ERR-2 location PV1^1^19, ERR-3 101 required field missing (table 0357), ERR-4 E.
        (err,) = errs(ack)
        assert err[2:5] == ["PV1^1^19", "101^Required field missing^HL70357", "E"]
        (letter,) = gw.producer.dead_letters()
        assert (letter.reason, letter.format, letter.source.via) == (
            "missing_field",
            "hl7v2",
            "mllp",
        )
        assert letter.source.control_id == "DFT-1001-1"
        assert base64.b64decode(letter.value_b64 or "") == raw
        assert gw.producer.stored(INBOUND) == []


@pytest.mark.asyncio
async def test_not_hl7_gets_a_header_less_ae() -> None:
    async with running() as gw:
        c = await gw.connect()
        await c.send(frame(b"hello, is this the billing system?"))
        ack_bytes = await c.raw_ack()
        ack = [s.split("|") for s in ack_bytes.decode().split("\r")[:-1]]
        # MSA-2 cannot echo an MSH-10 that could not be read.
        assert msa(ack)[:3] == ["MSA", "AE", ""] and msa(ack)[3].startswith("not_hl7")
        assert [d.reason for d in gw.producer.dead_letters()] == ["not_hl7"]


@pytest.mark.asyncio
async def test_a_bom_before_msh_is_refused_naming_it_in_an_ae_addressed_by_its_header() -> None:
    # docs/rules.md "Input hygiene": refused (AE, not_hl7, the BOM named), but MSH-10 is
    # readable after the BOM, so the ACK echoes it (MSA-2) and answers the sender's MSH-3/4 in
    # MSH-5/6, and the metric counts the message's MSH-9 type, not `unknown`.
    bom = b"\xef\xbb\xbf"
    raw = fixture("dft_p03_pt_v1001.hl7")
    async with running() as gw:
        c = await gw.connect()
        await c.send(frame(bom + raw))
        ack_bytes = await c.raw_ack()
        strict_251(ack_bytes)
        ack = [s.split("|") for s in ack_bytes.decode().split("\r")[:-1]]
        assert msa(ack)[:3] == ["MSA", "AE", "DFT-1001-1"]
        assert msa(ack)[3].startswith("not_hl7: the message starts with a UTF-8 byte-order mark")
        # The fixture's MSH-3/4 are PTEMR/CLINIC01: the ACK's MSH-5/6 (HL7 v2.5 ch. 2.14.9).
        assert ack[0][4:6] == ["PTEMR", "CLINIC01"]
        assert ack[0][8] == "ACK^P03^ACK"
        (letter,) = gw.producer.dead_letters()
        assert letter.reason == "not_hl7" and "byte-order mark" in letter.detail
        assert letter.source.control_id == "DFT-1001-1"
        assert base64.b64decode(letter.value_b64 or "") == bom + raw
        assert gw.producer.stored(INBOUND) == []
        text = gw.metrics_text()
        assert 'therapy_compliance_mllp_messages_total{ack="AE",type="DFT^P03"} 1.0' in text


@pytest.mark.asyncio
async def test_ar_when_the_dead_letter_cannot_be_written() -> None:
    raw = fixture("dft_p03_charge_and_credit.hl7")
    async with running(mode="fail_deadletter") as gw:
        c = await gw.connect()
        await c.send(frame(raw))
        ack = await c.ack()
        assert msa(ack)[1] == "AR" and "dead letter not written" in msa(ack)[3]
        assert gw.producer.stored(DEADLETTER) == []


@pytest.mark.asyncio
async def test_a_parser_crash_is_dead_lettered_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("gateway.handler.parse_hl7v2_parts", boom)
    async with running() as gw:
        c = await gw.connect()
        await c.send(frame(fixture("dft_p03_pt_v1001.hl7")))
        ack = await c.ack()
        assert msa(ack)[1] == "AE" and msa(ack)[3].startswith("processing_error")
        assert [e[3] for e in errs(ack)] == ["207^Application internal error^HL70357"]
        assert [d.reason for d in gw.producer.dead_letters()] == ["processing_error"]


# ---- framing faults -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bytes_before_a_start_block_are_dead_lettered_without_an_answer() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    async with running() as gw:
        c = await gw.connect()
        await c.send(b"GET / HTTP/1.0\r\n\r\n" + frame(raw))
        # Exactly one ACK, for the message: an ACK for the stray bytes would pair every later
        # ACK with the wrong request.
        assert msa(await c.ack())[:3] == ["MSA", "AA", "DFT-1001-1"]
        assert await c.nothing_within(0.3)
        (letter,) = gw.producer.dead_letters()
        assert letter.reason == "bad_framing" and "outside an MLLP block" in letter.detail
        assert base64.b64decode(letter.value_b64 or "") == b"GET / HTTP/1.0\r\n\r\n"


@pytest.mark.asyncio
async def test_a_message_without_start_byte_gets_ae_naming_its_control_id() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    async with running() as gw:
        c = await gw.connect()
        await c.send(raw + EB + CR + frame(raw))
        first, second = await c.ack(), await c.ack()
        assert msa(first)[:3] == ["MSA", "AE", "DFT-1001-1"]
        assert msa(first)[3].startswith("bad_framing")
        assert [e[3] for e in errs(first)] == ["100^Segment sequence error^HL70357"]
        assert msa(second)[1] == "AA"  # resynchronised on the next start block


@pytest.mark.asyncio
async def test_an_interrupted_block_is_dead_lettered_and_the_next_one_answered() -> None:
    raw = fixture("mdm_t02_pt_daily_v1001.hl7")
    async with running() as gw:
        c = await gw.connect()
        await c.send(SB + raw[:40] + frame(raw))
        assert msa(await c.ack())[:3] == ["MSA", "AA", "MDM-1001-1"]
        assert await c.nothing_within(0.3)
        (letter,) = gw.producer.dead_letters()
        assert letter.reason == "bad_framing" and "interrupted after 40 bytes" in letter.detail


@pytest.mark.asyncio
async def test_oversize_gets_ae_too_large_and_the_connection_resynchronises() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    big = raw + b"NTE|1||" + b"x" * 6000 + b"\r"
    async with running(TC_MLLP_MAX_BYTES="4096") as gw:
        c = await gw.connect()
        await c.send(frame(big) + frame(raw))
        first = await c.ack()
        assert msa(first)[:3] == ["MSA", "AE", "DFT-1001-1"]
        assert msa(first)[3].startswith("too_large")
        assert msa(await c.ack())[1] == "AA"
        (letter,) = gw.producer.dead_letters()
        assert letter.reason == "too_large" and f"{len(big)} bytes" in letter.detail
        assert base64.b64decode(letter.value_b64 or "") == big[:4096]
        assert f"first 4096 of {len(big)} bytes" in letter.detail


@pytest.mark.asyncio
async def test_a_dead_letter_leaves_out_what_does_not_fit_its_topic() -> None:
    """The one rule of every dead-letter topic (tests/unit/runtime/test_deadletters.py): the
    message whole or not at all, and the detail says so."""
    big = b"MSH|^~\\&|A|F|B|G|20260302160000||DFT^P03^DFT_P03|BIG1|P|2.5.1\r" + b"x" * 9000
    async with running(deadletter_limit=5000, TC_MLLP_MAX_BYTES="200000") as gw:
        c = await gw.connect()
        await c.send(frame(big))
        assert msa(await c.ack())[:2] == ["MSA", "AE"]
        (sent,) = gw.producer.stored(DEADLETTER)
        assert len(sent.value) <= 5000 - 1024
        letter = EhrDeadLetter.model_validate_json(sent.value)
        assert letter.value_b64 is None
        assert f"original value of {len(big)} bytes not attached" in letter.detail


@pytest.mark.asyncio
async def test_a_dead_letter_refused_as_too_large_is_written_in_its_smallest_form() -> None:
    """The topic's limit was lowered after the gateway read it: not ARs forever (the sender
    would resend for ever), but the letter without the message, then AE."""
    async with running() as gw:
        gw.producer.letter_limit = 600
        c = await gw.connect()
        await c.send(frame(b"NOT-HL7 " * 100))
        assert msa(await c.ack())[:2] == ["MSA", "AE"]
        (letter,) = gw.producer.dead_letters()
        assert letter.value_b64 is None and "refused the letter as too large" in letter.detail
        assert "dead_letters_shrunk_total 1.0" in gw.metrics_text()


@pytest.mark.asyncio
async def test_connection_closed_mid_frame_is_dead_lettered() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    async with running() as gw:
        c = await gw.connect()
        await c.send(SB + raw[:100])
        c.writer.write_eof()
        assert await c.closed_by_gateway()
        await asyncio.sleep(0.05)
        (letter,) = gw.producer.dead_letters()
        assert (
            letter.reason == "bad_framing" and "connection closed after 100 bytes" in letter.detail
        )
        assert letter.source.control_id == "DFT-1001-1"
        assert base64.b64decode(letter.value_b64 or "") == raw[:100]


@pytest.mark.asyncio
async def test_a_frame_never_ended_gets_an_answer_then_the_connection_closes() -> None:
    raw = fixture("dft_p03_pt_v1001.hl7")
    async with running(TC_MLLP_IDLE_TIMEOUT_S="0.5") as gw:
        c = await gw.connect()
        await c.send(SB + raw)  # no <EB><CR>
        ack = await c.ack(timeout=3)
        assert msa(ack)[:3] == ["MSA", "AE", "DFT-1001-1"]
        assert msa(ack)[3] == (
            f"bad_framing: a block of {len(raw)} bytes was not ended within TC_MLLP_IDLE_TIMEOUT_S"
        )
        assert await c.closed_by_gateway()
        (letter,) = gw.producer.dead_letters()
        assert letter.reason == "bad_framing" and "not ended within" in letter.detail


@pytest.mark.asyncio
async def test_an_idle_connection_is_closed_quietly() -> None:
    async with running(TC_MLLP_IDLE_TIMEOUT_S="0.3") as gw:
        c = await gw.connect()
        assert await c.closed_by_gateway()
        assert gw.producer.sent == []


# ---- stop, metrics, PHI ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_lets_a_message_in_flight_finish_and_closes_idle_connections() -> None:
    async with running(mode="hold", TC_MLLP_ACK_TIMEOUT_S="5") as gw:
        busy, idle = await gw.connect(), await gw.connect()
        await busy.send(frame(fixture("dft_p03_pt_v1001.hl7")))
        while not gw.producer.sent:
            await asyncio.sleep(0.01)
        for conn in gw.connections:
            conn.stop()
        assert await idle.closed_by_gateway()
        gw.producer.sent[0].future.set_result(None)
        assert msa(await busy.ack())[1] == "AA"  # in flight: finished, then closed
        assert await busy.closed_by_gateway()


@pytest.mark.asyncio
async def test_metrics_count_messages_by_type_and_ack_and_dead_letters_by_reason() -> None:
    async with running() as gw:
        c = await gw.connect()
        for raw in (
            fixture("dft_p03_pt_v1001.hl7"),
            fixture("mdm_t02_pt_daily_v1001.hl7"),
            fixture("dft_p03_charge_and_credit.hl7"),
            fixture("dft_p03_pt_v1001.hl7").replace(b"DFT^P03^DFT_P03", b"ADT^A01^ADT_A01"),
        ):
            await c.send(frame(raw))
            await c.ack()
        await c.send(frame(b"junk"))
        await c.ack()
        text = gw.metrics_text()
        p = "therapy_compliance_mllp"
        for line in (
            f'{p}_messages_total{{ack="AA",type="DFT^P03"}} 1.0',
            f'{p}_messages_total{{ack="AA",type="MDM^T02"}} 1.0',
            f'{p}_messages_total{{ack="AE",type="DFT^P03"}} 1.0',
            f'{p}_messages_total{{ack="AE",type="other"}} 1.0',
            f'{p}_messages_total{{ack="AE",type="unknown"}} 1.0',
            f'{p}_dead_letters_total{{reason="unsupported_transaction"}} 1.0',
            f'{p}_dead_letters_total{{reason="unsupported_type"}} 1.0',
            f'{p}_dead_letters_total{{reason="not_hl7"}} 1.0',
            f'{p}_ack_seconds_count{{ack="AA"}} 2.0',
            f"{p}_connections_open 1.0",
        ):
            assert line in text, line


MARKERS = ["ZZFAMILY", "ZZGIVEN", "ZZMRN77", "19230405", "ZZSTREET", "ZZCITY", "5559876543"]
MARKERS += ["987-65-4320", "ZZPID2X", "ZZACCT88"]
PID = (
    "PID|1|ZZPID2X|ZZMRN77^^^CLINIC01^MR||ZZFAMILY^ZZGIVEN||19230405|F|||"
    "1 ZZSTREET^^ZZCITY^ST^00000||5559876543|||||ZZACCT88|987-65-4320"
)


def with_markers(raw: bytes) -> bytes:
    segs = raw.decode().split("\r")
    return "\r".join(PID if s.startswith("PID|") else s for s in segs).encode()


@pytest.mark.asyncio
async def test_no_patient_data_in_logs_metrics_or_dead_letter_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    good = with_markers(fixture("dft_p03_pt_v1001.hl7"))
    bad = with_markers(fixture("dft_p03_pt_v1001.hl7").replace(b"V1001^^^CLINIC01^VN", b""))
    async with running(TC_MLLP_MAX_BYTES="1024") as gw:
        c = await gw.connect()
        for data in (
            frame(good),
            frame(bad),
            good + EB + CR,  # no start byte
            b"ZZFAMILY" + frame(good),  # stray bytes
            frame(good + b"NTE|1||" + b"x" * 2000),  # too large
            SB + good,  # closed mid-frame
        ):
            await c.send(data)
            await asyncio.sleep(0.05)
        c.writer.write_eof()
        await c.closed_by_gateway()
        await asyncio.sleep(0.05)
        details = [d.model_dump_json(exclude={"value_b64"}) for d in gw.producer.dead_letters()]
        assert len(details) == 5
        text = caplog.text + gw.metrics_text() + "".join(details)
        for marker in MARKERS:
            assert marker not in text, marker
        assert "AA" in caplog.text and "DFT-1001-1" in caplog.text  # MSH-10 is logged


@pytest.mark.asyncio
async def test_ack_bytes_never_carry_pid_content() -> None:
    async with running() as gw:
        c = await gw.connect()
        bad = with_markers(fixture("dft_p03_pt_v1001.hl7").replace(b"|P|2.5.1", b"|P|9.9"))
        await c.send(frame(bad))
        ack = await c.raw_ack()
        assert msa([s.split("|") for s in ack.decode().split("\r")[:-1]])[1] == "AE"
        for marker in MARKERS:
            assert marker.encode() not in ack


def test_metric_labels_are_bounded() -> None:
    text = generate_latest(GatewayMetrics().registry).decode()
    types = {
        line.split('type="')[1].split('"')[0]
        for line in text.splitlines()
        if "_messages_total{" in line
    }
    assert types == {
        "DFT^P03",
        "MDM^T02",
        "MDM^T04",
        "MDM^T06",
        "MDM^T08",
        "MDM^T10",
        "MDM^T11",
        "ORU^R01",
        "other",
        "unknown",
    }
