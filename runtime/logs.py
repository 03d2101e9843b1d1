"""Logging every program shares: client libraries never log payloads (PHI), faust/mode's
development lines are off, and a client's reconnect noise is throttled."""

from __future__ import annotations

import logging
import time

import mode.utils.logging as mode_logging

log = logging.getLogger("runtime.logs")

#: Libraries that log record keys and values at DEBUG (aiokafka: "Sending (key=... value=...)",
#: faust and mode, the kafka compatibility names, aiohttp's access log with request paths).
PAYLOAD_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "aiohttp.access")


def clamp_payload_loggers(level: int) -> None:
    """Payloads may carry PHI: these loggers never go below INFO, whatever TC_LOG_LEVEL says;
    and mode's DEVLOG lines (payloads at INFO) are off. Our own loggers never log payloads."""
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    disable_dev_logging()


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
