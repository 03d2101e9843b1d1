"""`tail-alerts`: compliance alerts as they arrive, one line a biller can read (or raw JSON)."""

from __future__ import annotations

import sys
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from runtime.settings import Settings

SEVERITY_MARK = {"error": "ERROR  ", "warning": "WARNING", "info": "INFO   "}


def format_alert(alert: dict[str, object]) -> str:
    """One line a biller can read: severity, visit, date, payer, rule, codes, message."""
    cpt = alert.get("cpt") or "visit"
    return (
        f"{SEVERITY_MARK.get(str(alert.get('severity')), str(alert.get('severity')))} "
        f"{alert.get('visit_id')}  DOS {alert.get('date_of_service')}  "
        f"{alert.get('payer_id')}  {alert.get('rule_id')} [{cpt}]: {alert.get('message')}"
    )


def tail_consumer(settings: Settings, topic: str, from_beginning: bool) -> AIOKafkaConsumer:
    """A consumer without a group (a person's view commits nothing) from the topic's start or
    its end."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **settings.aiokafka_security(),
    )


async def start(consumer: AIOKafkaConsumer) -> None:
    """`consumer.start()`, stopping it when that fails (an unreachable broker), so nothing is
    left open behind the one-line error (cli/commands/_kafka.py)."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise


async def tail_alerts(
    settings: Settings,
    from_beginning: bool,
    as_json: bool,
    limit: int | None,
    out: TextIO = sys.stdout,
) -> int:
    consumer = tail_consumer(settings, settings.topic_alerts, from_beginning)
    await start(consumer)
    shown = 0
    try:
        async for msg in consumer:
            if msg.value is None:
                continue
            if as_json:
                out.write(msg.value.decode() + "\n")
            else:
                out.write(format_alert(orjson.loads(msg.value)) + "\n")
            out.flush()
            shown += 1
            if limit is not None and shown >= limit:
                break
    finally:
        await consumer.stop()
    return shown
