"""`demo-feed` (cli/demo_feed.py) with a stand-in producer: it sends the live synthetic feed (dates
ending today, by the real clock) and prints the alerts it intends by rule, which ops/demo sets
against the worker's; `audit` over what it sent raises exactly those."""

from __future__ import annotations

import asyncio
import io
from datetime import date
from typing import Any, ClassVar

import pytest

import cli.demo_feed
from cli.audit import run_audit
from cli.demo_feed import demo_feed
from compliance import Engine
from runtime.settings import Settings
from schemas import Rejection, decode_visit


class Producer:
    """aiokafka's producer as demo_feed uses it: start, send (a future), stop."""

    sent: ClassVar[list[tuple[str, bytes, bytes]]] = []

    def __init__(self, **_: Any) -> None:
        Producer.sent = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        Producer.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize("mode", ["visits", "episodes"])
def test_the_feed_prints_the_alerts_it_intends_and_audit_raises_them(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.demo_feed, "AIOKafkaProducer", Producer)
    settings = Settings.from_env({"TC_CREATE_TOPICS": "false"})
    out = io.StringIO()
    intents = asyncio.run(demo_feed(settings, 0, 600, 5, 0.02, mode, out))
    assert sum(intents.values()) == len(Producer.sent) == 600
    (line,) = [x for x in out.getvalue().splitlines() if "intended alerts by rule: " in x]
    intended = {
        rule: int(n)
        for rule, n in (kv.split("=") for kv in line.split("intended alerts by rule: ")[1].split())
    }
    assert sum(intended.values()) > 20

    values = [value for _, _, value in Producer.sent]
    err = io.StringIO()
    summary = run_audit(io.BytesIO(b"\n".join(values)), io.BytesIO(), err, engine=Engine())
    assert dict(summary.alerts_by_rule) == intended
    assert summary.invalid_lines == intents["malformed"] > 0
    visits = [v for v in map(decode_visit, values) if not isinstance(v, Rejection)]
    assert max(v.date_of_service for v in visits) <= date.today()  # live: ending today (local)
