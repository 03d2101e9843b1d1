"""Process plumbing of the MLLP gateway: its topics, logging (payload-safe, throttled client
noise) and the hard stop watchdog."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from gateway.deadletters import FRAMING_BYTES
from runtime.settings import Settings

log = logging.getLogger("gateway.server")

#: Exit status when the stop had to be cut short (streams/worker.py uses the same).
EXIT_SHUTDOWN_TIMEOUT = 75
#: Libraries that log record keys and values at DEBUG (streams/worker.py PAYLOAD_LOGGERS).
PAYLOAD_LOGGERS = ("aiokafka", "kafka", "aiohttp.access")


async def ensure_topics(settings: Settings) -> None:
    """Create the inbound and EHR dead-letter topics when missing (never alter existing ones)."""
    p, r = settings.partitions, settings.replication_factor
    specs = [
        NewTopic(
            settings.topic_hl7_inbound,
            p,
            r,
            topic_configs={"max.message.bytes": str(settings.mllp_max_bytes + FRAMING_BYTES)},
        ),
        NewTopic(
            settings.topic_ehr_deadletter,
            p,
            r,
            topic_configs={"max.message.bytes": str(settings.deadletter_max_bytes)},
        ),
    ]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.app_id}-mllp-admin",
        **settings.aiokafka_security(),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                await admin.create_topics([spec])
                log.info("created topic %s", spec.name)
    finally:
        await admin.close()


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.value.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Client libraries may log payloads at DEBUG: never below INFO, whatever TC_LOG_LEVEL says.
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for handler in logging.getLogger().handlers:
        handler.addFilter(ClientLogThrottle())


class ClientLogThrottle(logging.Filter):
    """aiokafka logs every reconnect attempt (ten lines a second while the broker is down): let
    each distinct client message through once per `every_s` seconds, with a count of the rest."""

    def __init__(self, every_s: float = 30.0, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.every_s = every_s
        self.prefix = prefix
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, skipped = self._seen.get(key, (-self.every_s, 0))
        if now - last < self.every_s:
            self._seen[key] = (last, skipped + 1)
            return False
        if len(self._seen) > 1000:  # messages are templates; bound the table anyway
            self._seen.clear()
        self._seen[key] = (now, 0)
        if skipped:
            record.msg = f"{record.msg} [{skipped} similar suppressed]"
        return True


def arm_watchdog(timeout: float, prog: str) -> None:
    def _exit() -> None:
        sys.stderr.write(
            f"{prog}: stop exceeded {timeout:g}s; exiting now (un-ACKed messages are resent)\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    timer = threading.Timer(timeout, _exit)
    timer.daemon = True
    timer.start()
