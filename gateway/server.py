"""The MLLP gateway (`therapy-compliance mllp-gateway`): HL7 v2 over MLLP in, each message
written as received to the inbound topic, ACKed once the broker has it.

```
sender --MLLP--> frame --parse_hl7v2--> part ------> ehr.hl7v2.inbound.v1 (key patient_ref) -> AA
                   |                  +-> rejection -> ehr.deadletter.v1 ----------------------> AE
                   +-> framing fault --------------> ehr.deadletter.v1 -> AE (when awaited)
        either write failed or not acknowledged within TC_MLLP_ACK_TIMEOUT_S ------------------> AR
```

This module is the wiring: settings, broker check (exit 69), topics, producer, listener (TLS
optional), /metrics and /health, and the bounded stop on SIGTERM/SIGINT. The decisions live in
gateway/handler.py, the connection loop in gateway/connection.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import ssl
import sys
import time
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ehr import EhrConfig, ProfileError
from gateway.connection import Connection
from gateway.handler import MessageHandler
from gateway.logs import configure_logging
from gateway.metrics import GatewayMetrics
from runtime.deadletters import FRAMING_BYTES
from runtime.preflight import wait_for_broker
from runtime.process import EXIT_CONFIG, EXIT_NO_BROKER, EXIT_SHUTDOWN_TIMEOUT, arm_watchdog
from runtime.settings import GatewaySettings
from runtime.topics import ensure_topics, record_limit

log = logging.getLogger(__name__)
PROG = "therapy-compliance mllp-gateway"


def gateway_main(settings: GatewaySettings) -> int:
    configure_logging(settings)
    missing = settings.ehr_profile_problem()
    if missing is not None:
        _say(missing)
        return 2
    try:
        config = settings.ehr_config()
    except (ProfileError, ValueError) as exc:
        _say(f"{exc} (TC_EHR_PATIENT_KEY, TC_EHR_PROFILE)")
        return 2
    try:
        tls = server_tls(settings)
    except (OSError, ssl.SSLError) as exc:
        _say(f"cannot load TC_MLLP_CERTFILE / TC_MLLP_KEYFILE: {type(exc).__name__}: {exc}")
        return 2
    gateway = Gateway(settings, config, tls)
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(gateway.run())
    return asyncio.run(gateway.run())


def server_tls(settings: GatewaySettings) -> ssl.SSLContext | None:
    if settings.mllp_certfile is None or settings.mllp_keyfile is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(settings.mllp_certfile), str(settings.mllp_keyfile))
    return ctx


class Gateway:
    def __init__(
        self, settings: GatewaySettings, config: EhrConfig, tls: ssl.SSLContext | None
    ) -> None:
        self.settings = settings
        self.config = config
        self.tls = tls
        self.metrics = GatewayMetrics()
        self.connections: set[Connection] = set()
        self.stopping = asyncio.Event()
        self.status = "starting"
        self._ids = itertools.count(1)
        self.handler: MessageHandler | None = None

    async def run(self) -> int:
        s = self.settings
        problem = await wait_for_broker(s)
        if problem:
            _say(problem)
            return EXIT_NO_BROKER
        if s.create_topics:  # what the gateway writes, created as the worker would
            await ensure_topics(s, {s.topic_hl7_inbound, s.topic_ehr_deadletter})
        max_bytes, dl_limit = await self._limits()
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{s.app_id}-mllp",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=max(dl_limit, max_bytes + FRAMING_BYTES),
            **s.aiokafka_security(),
        )
        await producer.start()
        self.handler = MessageHandler(
            s, self.config, producer, self.metrics, max_bytes=max_bytes, deadletter_limit=dl_limit
        )
        try:
            server = await asyncio.start_server(
                self._connected, s.mllp_host, s.mllp_port, ssl=self.tls, reuse_address=True
            )
        except OSError as exc:
            _say(f"cannot listen on {s.mllp_host}:{s.mllp_port} ({exc.strerror}): TC_MLLP_PORT")
            await producer.stop()
            return EXIT_CONFIG
        web_runner = await self._start_web()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.status = "ok"
        log.info(
            "listening on %s:%d (%s), max message %d bytes, ack timeout %gs; /metrics on %s:%d",
            s.mllp_host,
            s.mllp_port,
            "TLS" if self.tls else "plain TCP",
            max_bytes,
            s.mllp_ack_timeout_s,
            s.web_host,
            s.mllp_web_port,
        )
        await self.stopping.wait()
        return await self._stop(server, producer, web_runner)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.handler is not None
        conn = Connection(
            self.handler,
            reader,
            writer,
            cid=next(self._ids),
            idle_timeout_s=self.settings.mllp_idle_timeout_s,
            metrics=self.metrics,
        )
        if self.stopping.is_set():
            writer.close()
            return
        conn.task = asyncio.current_task()
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    async def _stop(self, server: asyncio.Server, producer: Any, web_runner: web.AppRunner) -> int:
        """Stop accepting, let messages in flight finish (bounded), flush and close the producer.
        A hard watchdog ends the process if anything hangs beyond TC_SHUTDOWN_TIMEOUT_S."""
        s = self.settings
        self.status = "stopping"
        arm_watchdog(
            s.shutdown_timeout_s,
            EXIT_SHUTDOWN_TIMEOUT,
            "stop",
            PROG,
            "un-ACKed messages are resent",
        )
        started = time.monotonic()
        log.info("stopping: no new connections; %d open", len(self.connections))
        server.close()
        tasks = [c.task for c in self.connections if c.task is not None]
        for conn in list(self.connections):
            conn.stop()
        clean = True
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=s.drain_timeout_s)
            if pending:
                clean = False
                log.warning("stop: %d connection(s) still busy, cut short", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=1)
        remaining = max(1.0, s.shutdown_timeout_s - (time.monotonic() - started) - 1)
        try:
            await asyncio.wait_for(producer.stop(), remaining)
        except Exception as exc:
            clean = False
            log.warning("stop: producer did not close cleanly (%s)", type(exc).__name__)
        await web_runner.cleanup()
        log.info("stopped in %.1fs", time.monotonic() - started)
        return 0 if clean else EXIT_SHUTDOWN_TIMEOUT

    async def _limits(self) -> tuple[int, int]:
        """Largest message and dead letter: the settings, lowered to what the topics accept (a
        message the broker would refuse forever must get AE too_large, not endless ARs)."""

        s = self.settings
        max_bytes, dl_limit = s.mllp_max_bytes, s.deadletter_max_bytes
        inbound = await record_limit(s, s.topic_hl7_inbound)
        if inbound is not None and inbound - FRAMING_BYTES < max_bytes:
            max_bytes = max(1024, inbound - FRAMING_BYTES)
            log.warning(
                "topic %s accepts records of %d bytes: messages over %d bytes get AE too_large "
                "(raise its max.message.bytes to honour TC_MLLP_MAX_BYTES)",
                s.topic_hl7_inbound,
                inbound,
                max_bytes,
            )
        dead = await record_limit(s, s.topic_ehr_deadletter)
        if dead is not None:
            dl_limit = min(dl_limit, dead)
        return max_bytes, dl_limit

    async def _start_web(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.web_host, self.settings.mllp_web_port).start()
        return runner

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, _request: web.Request) -> web.Response:
        status = self.status
        health = self.handler.health if self.handler else None
        if status == "ok" and health is not None and health.failing_since is not None:
            status = "not_storing"  # the last write to the broker failed: senders get AR
        now = time.time()
        body = {
            "status": status,
            "connections_open": len(self.connections),
            "seconds_since_stored": (
                round(now - health.last_stored, 1) if health and health.last_stored else None
            ),
            "failing_for_s": (
                round(now - health.failing_since, 1) if health and health.failing_since else None
            ),
        }
        return web.Response(
            body=orjson.dumps(body),
            status=200 if status == "ok" else 503,
            content_type="application/json",
        )


def _say(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()
