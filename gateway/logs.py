"""The gateway's logging: payload-safe (runtime/logs.py) and with the client's reconnect noise
throttled."""

from __future__ import annotations

import logging
import sys
import time

from runtime.logs import clamp_payload_loggers
from runtime.settings import GatewaySettings


def configure_logging(settings: GatewaySettings) -> None:
    level = getattr(logging, settings.log_level.value.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    clamp_payload_loggers(level)
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
