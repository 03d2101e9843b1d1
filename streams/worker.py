"""Running the Faust worker with a bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import faust
import mode.utils.logging as mode_logging
from aiokafka.admin import AIOKafkaAdminClient

from runtime.settings import Settings

log = logging.getLogger("streams.worker")

#: Libraries that log message payloads at DEBUG.
PAYLOAD_LOGGERS = ("aiokafka", "faust", "mode", "kafka")

#: Exit status when the broker cannot be reached or refuses the credentials at start.
EXIT_NO_BROKER = 69  # EX_UNAVAILABLE

#: Exit status when the shutdown watchdog had to cut a graceful stop short.
EXIT_SHUTDOWN_TIMEOUT = 75

#: Exit status when existing topics contradict the settings (EX_CONFIG).
EXIT_CONFIG = 78


class BoundedWorker(faust.Worker):
    """The app's worker class (`Worker=` in streams/app.py), so `faust -A streams.app worker`
    and `therapy-compliance worker` behave the same.

    - Preflight: before faust starts, one connection to the broker names a wrong address,
      certificate or password in one line and exits 69 (faust itself would retry and log
      tracebacks).
    - Logging: TC_LOG_LEVEL decides; client libraries that log payloads at DEBUG never go
      below INFO, and faust/mode's DEVLOG lines (payloads at INFO) are off.
    - Bounded shutdown: after SIGTERM/SIGINT the process exits within TC_SHUTDOWN_TIMEOUT_S. A
      graceful stop finishes the batches in flight, commits what is durable and leaves the
      group; should anything hang, the watchdog ends the process (exit 75). Offsets not yet
      committed are re-delivered, so the bound costs duplicates, never visits. A stop that had
      to give up on unacknowledged outputs also exits 75.
    """

    def __init__(self, app: faust.App, *services: Any, **kwargs: Any) -> None:
        settings: Settings = app.tc_settings  # type: ignore[attr-defined]
        kwargs["loglevel"] = settings.log_level.value
        super().__init__(app, *services, **kwargs)
        self.tc_settings = settings
        self.shutdown_timeout_s = settings.shutdown_timeout_s
        # faust's terminal spinner sets the root logger to DEBUG so that every record spins it:
        # every library debug call then builds a LogRecord (measurable CPU per message).
        self.spinner = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # Client libraries log record keys and values at DEBUG (aiokafka: "Sending (key=...
        # value=...)"). Payloads may carry PHI, so these loggers never go below INFO, whatever
        # TC_LOG_LEVEL says; our own loggers never log payloads at any level.
        for name in PAYLOAD_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.INFO))
        disable_dev_logging()

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            arm_watchdog(self.shutdown_timeout_s, EXIT_SHUTDOWN_TIMEOUT, "graceful stop")
        super()._schedule_shutdown(signal)

    def execute_from_commandline(self) -> NoReturn:
        problem = self.loop.run_until_complete(wait_for_broker(self.tc_settings))
        if problem:
            sys.stderr.write(f"therapy-compliance worker: {problem}\n")
            sys.stderr.flush()
            raise SystemExit(EXIT_NO_BROKER)
        changelogs = [t.changelog_topic.get_topic_name() for t in self.app.tables.values()]
        problem = self.loop.run_until_complete(check_topics(self.tc_settings, changelogs))
        if problem:
            sys.stderr.write(f"therapy-compliance worker: {problem}\n")
            sys.stderr.flush()
            raise SystemExit(EXIT_CONFIG)
        try:
            super().execute_from_commandline()
        except SystemExit as exc:
            if exc.code in (0, None) and not getattr(self.app, "tc_clean_stop", True):
                raise SystemExit(EXIT_SHUTDOWN_TIMEOUT) from None
            raise


def disable_dev_logging() -> None:
    """Turn off mode's development log lines, whatever the DEVLOG environment variable says.

    `log.dev(...)` of every faust/mode service logs at INFO when DEVLOG is set (read once, at
    import of mode.utils.logging), so the INFO clamp of PAYLOAD_LOGGERS does not stop it, and
    some of those lines hold record keys and values (faust's own fetch loop,
    TC_FETCH_LOOP=kafka: "DROPPED MESSAGE ROFF %r: k=%r v=%r"). Payloads may carry PHI. `dev()`
    reads the module global at each call, so clearing it silences every logger, including
    those created earlier."""
    if mode_logging.DEVLOG:
        log.warning(
            "DEVLOG is set but ignored: faust's development log lines can contain record keys "
            "and values (PHI); use TC_LOG_LEVEL=debug instead"
        )
    mode_logging.DEVLOG = False


async def wait_for_broker(settings: Settings) -> str | None:
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
    settings: Settings, timeout_s: float = 20.0, client_errors: list[str] | None = None
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


#: Smallest dead-letter record limit accepted: a dead letter without the original bytes is a
#: few hundred bytes, and 1 KiB is kept free for Kafka's framing (streams/processor.py).
MIN_DEADLETTER_BYTES = 8192


async def check_topics(settings: Settings, changelogs: Sequence[str]) -> str | None:
    """Existing topics that contradict the settings. State is co-partitioned with the input:
    the input topic and every table's changelog must have TC_PARTITIONS partitions (topics that
    do not exist yet are created so). Each dead-letter topic must hold a dead letter."""
    from runtime.topics import record_limit

    deadletter_topics = [settings.topic_deadletter]
    if settings.ehr_enabled:
        deadletter_topics.append(settings.topic_ehr_deadletter)
    for topic in deadletter_topics:
        limit = await record_limit(settings, topic)
        if limit is not None and limit < MIN_DEADLETTER_BYTES:
            return (
                f"topic {topic} accepts records of at most {limit} bytes; a dead letter needs "
                f"{MIN_DEADLETTER_BYTES} (raise its max.message.bytes)"
            )
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.app_id}-preflight",
        **settings.aiokafka_security(),
    )
    try:
        await admin.start()
        # All topics: a metadata request naming a missing topic would create it with the
        # broker's default partition count where auto.create.topics.enable is on.
        wanted = {settings.topic_visits, *changelogs}
        if settings.ehr_enabled:
            wanted |= {
                settings.topic_hl7_inbound,
                settings.topic_fhir_inbound,
                settings.topic_ehr_parts,
            }
        described = [t for t in await admin.describe_topics() if t.get("topic") in wanted]
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    for topic in described:
        count = len(topic.get("partitions") or [])
        if topic.get("error_code") == 0 and count != settings.partitions:
            return (
                f"topic {topic['topic']} has {count} partitions but TC_PARTITIONS="
                f"{settings.partitions}: per-patient state must be partitioned exactly like the "
                f"input (set TC_PARTITIONS={count}, or recreate the topic)"
            )
    return None


def arm_watchdog(timeout: float, code: int, what: str) -> None:
    """End the process after `timeout` seconds whatever the event loop is doing (a stop that
    waits on an unresponsive broker); uncommitted records are re-delivered, nothing is lost."""
    timer = threading.Timer(timeout, _hard_exit, args=(timeout, code, what))
    timer.daemon = True
    timer.start()


def _hard_exit(timeout: float, code: int = EXIT_SHUTDOWN_TIMEOUT, what: str = "stop") -> None:
    sys.stderr.write(
        f"worker: {what} exceeded {timeout:.0f}s; exiting now "
        "(uncommitted records will be re-delivered)\n"
    )
    sys.stderr.flush()
    os._exit(code)


def run_worker(argv: Sequence[str] = ()) -> NoReturn:
    """`therapy-compliance worker [faust worker options]`: exactly `faust -A streams.app
    worker`, so there is one way to run the worker."""
    from faust.cli.faust import cli

    cli.main(
        args=["-A", "streams.app", "worker", *argv],
        prog_name="therapy-compliance worker",
    )
    raise SystemExit(0)  # pragma: no cover - click exits
