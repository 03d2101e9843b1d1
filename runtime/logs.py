"""Logging every program shares: the client libraries that log record keys and values never
log below INFO (payloads may carry PHI)."""

from __future__ import annotations

import logging

#: Libraries that log record keys and values at DEBUG (aiokafka: "Sending (key=... value=...)",
#: faust and mode, the kafka compatibility names, aiohttp's access log with request paths).
PAYLOAD_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "aiohttp.access")


def clamp_payload_loggers(level: int) -> None:
    """These loggers never go below INFO, whatever TC_LOG_LEVEL says (setting a logger's level
    imports nothing). Our own loggers never log payloads at any level."""
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
