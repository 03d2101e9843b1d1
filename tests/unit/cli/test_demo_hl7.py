"""The demo sender against the gateway's connection handler (fake producer): it sends every
message of its visits, reads each ACK and prints the summary."""

from __future__ import annotations

import io
import socket

import pytest

from cli.demo_hl7 import _msa, send_demo
from synthetic.hl7 import Hl7VisitGenerator
from tests.unit.gateway.test_mllp_gateway import INBOUND, running, settings


@pytest.mark.asyncio
async def test_demo_sends_every_message_and_summarises_the_acks() -> None:
    expected = list(Hl7VisitGenerator(seed=5).messages(12))
    commercial = sum(1 for m in expected if m.kind == "charges" and m.payer_kind == "commercial")
    async with running() as gw:
        out = io.StringIO()
        code = await send_demo(settings(TC_MLLP_PORT=str(gw.port)), 12, 5, 900.0, out)
        text = out.getvalue()
        assert code == 0, text
        # The shipped profile maps only Medicare: commercial DFTs come back AE unmapped_code.
        aa = len(expected) - commercial
        assert f"ACKs: AA {aa}, AE {commercial}, AR 0" in text
        # What ops/demo --hl7 waits for (the figures: test_hl7_demo_synthetic.py).
        assert "the worker's join should emit " in text and " partial visit events" in text
        # The alerts intended, for the visits without a commercial DFT (their DFT is refused:
        # the join sees their note alone); the figures: test_intents_every_mode.py.
        visits = [list(v) for v in Hl7VisitGenerator(seed=5).visits(12)]
        whole = sum(
            1
            for v in visits
            if not any(m.kind == "charges" and m.payer_kind == "commercial" for m in v)
        )
        assert f"(the {whole} of 12 visits whose every message was stored)" in text
        assert [s.value for s in gw.producer.stored(INBOUND)] == [
            m.raw for m in expected if not (m.kind == "charges" and m.payer_kind == "commercial")
        ]


@pytest.mark.asyncio
async def test_demo_reports_ar_and_exits_1() -> None:
    async with running(mode="fail") as gw:
        out = io.StringIO()
        assert await send_demo(settings(TC_MLLP_PORT=str(gw.port)), 2, 5, 900.0, out) == 1
        assert "AA 0" in out.getvalue() and "not stored" in out.getvalue()


@pytest.mark.asyncio
async def test_demo_names_the_setting_when_no_gateway_listens() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = io.StringIO()
    assert await send_demo(settings(TC_MLLP_PORT=str(port)), 1, 5, 900.0, out) == 1
    assert "TC_MLLP_HOST, TC_MLLP_PORT" in out.getvalue()


def test_msa_fields() -> None:
    ack = b"\x0bMSH|^~\\&|A|B|C|D|20260101||ACK^P03^ACK|1|P|2.5.1\rMSA|AE|X9|bad\r\x1c\r"
    assert _msa(ack) == ("AE", "X9", "bad")
    assert _msa(b"\x0bgarbage\x1c\r")[0] == "no MSA"
