"""Process plumbing of the MLLP gateway: its topics and its logging (payload-safe, throttled
client noise)."""

from __future__ import annotations

import logging
import sys

from runtime import topics
from runtime.logs import ClientLogThrottle, clamp_payload_loggers
from runtime.settings import Settings

log = logging.getLogger("gateway.server")


async def ensure_topics(settings: Settings) -> None:
    """Create the topics the gateway writes (the HL7 inbound and EHR dead-letter topics) when
    missing, as the worker would (runtime/topics.py); existing ones are never altered."""
    await topics.ensure_topics(
        settings, {settings.topic_hl7_inbound, settings.topic_ehr_deadletter}
    )


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.value.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    clamp_payload_loggers(level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ClientLogThrottle())
