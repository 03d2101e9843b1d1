"""Preflight: one connection to the broker before a program starts, so a wrong address,
certificate or password ends it at once with one clear line (faust and aiokafka would retry
and log tracebacks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka.admin import AIOKafkaAdminClient

from runtime.settings import CommonSection


async def wait_for_broker(settings: CommonSection) -> str | None:
    """Preflight, retried while the broker is merely unreachable (it may still be booting) for
    up to TC_STARTUP_WAIT_S; a TLS or authentication failure is final at once."""
    deadline = time.monotonic() + settings.startup_wait_s
    # aiokafka logs the real cause (TLS verification, SASL failure) and raises only "unable to
    # bootstrap": collect its messages to name the cause in one clear line of our own.
    aiokafka_log = logging.getLogger("aiokafka")
    collector = _Collector()
    previous, propagate = aiokafka_log.level, aiokafka_log.propagate
    aiokafka_log.setLevel(logging.ERROR)
    aiokafka_log.propagate = False
    aiokafka_log.addHandler(collector)
    try:
        while True:
            collector.messages.clear()
            problem = await preflight(
                settings, min(20.0, max(1.0, settings.startup_wait_s)), collector.messages
            )
            if problem is None or "failed" in problem or time.monotonic() >= deadline:
                return problem
            await asyncio.sleep(2)
    finally:
        aiokafka_log.removeHandler(collector)
        aiokafka_log.setLevel(previous)
        aiokafka_log.propagate = propagate


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def preflight(
    settings: CommonSection, timeout_s: float = 20.0, client_errors: list[str] | None = None
) -> str | None:
    """Connect once before starting faust, so a wrong address, certificate or password ends
    the worker at once with one clear line (faust would retry and log tracebacks)."""
    who = settings.security_protocol.value
    if settings.sasl_username:
        who += f" {settings.sasl_mechanism.value} as {settings.sasl_username!r}"
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.app_id}-preflight",
        request_timeout_ms=int(timeout_s * 1000),
        **settings.aiokafka_security(),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            reason = f"no answer within {timeout_s:.0f}s"
        if not reason.startswith(type(exc).__name__):
            reason = f"{type(exc).__name__}: {reason}"
        hint = ""
        text = " ".join([f"{type(exc).__name__} {exc}", *(client_errors or [])]).lower()
        if "auth" in text or "sasl" in text:
            hint = " (authentication failed: check TC_SASL_USERNAME / TC_SASL_PASSWORD)"
        elif "ssl" in text or "certificate" in text or "tls" in text:
            hint = " (TLS failed: check TC_SSL_CAFILE and the broker's certificate)"
        if client_errors:
            # The client's own last error names the cause; our settings never appear in it
            # except the user name (passwords are not logged by the client).
            reason += f"; client said: {client_errors[-1][:300]}"
        return (
            f"cannot connect to Kafka at {settings.brokers} ({who}): "
            f"{type(exc).__name__}: {reason}{hint}"
        )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return None
