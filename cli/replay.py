"""`therapy-compliance replay-deadletter`: re-publish dead letters to the input topic after a fix,
so nothing rejected is lost for good.

Reads the dead-letter topic from the start (or from --since) up to its end *as of the start of
the run* (records that are rejected again during the replay are not replayed again in the same
run), keeps those matching --reason, and produces each original value with its original key to
the input topic. Each replayed record carries a `tc-replay-of` header naming its dead letter.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from runtime.settings import Settings
from schemas.common import DeadLetterReason
from schemas.deadletter import DeadLetter


@dataclass
class ReplaySummary:
    replayed: Counter[str] = field(default_factory=Counter)
    skipped_reason: int = 0
    skipped_before_since: int = 0
    not_replayable: int = 0  # no original bytes attached (too large for the dead-letter topic)
    unreadable: int = 0  # a record on the dead-letter topic that is not a DeadLetter v1

    def line(self) -> str:
        total = sum(self.replayed.values())
        by_reason = ", ".join(f"{r} {n}" for r, n in sorted(self.replayed.items())) or "none"
        return (
            f"replay-deadletter: replayed {total} ({by_reason}); skipped: other reason "
            f"{self.skipped_reason}, before --since {self.skipped_before_since}, without "
            f"original bytes {self.not_replayable}, unreadable {self.unreadable}"
        )


async def replay_deadletters(
    settings: Settings,
    reason: DeadLetterReason | None,
    since: datetime | None,
    rekey: bool = False,
    dry_run: bool = False,
    out: TextIO = sys.stderr,
) -> ReplaySummary:
    summary = ReplaySummary()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.deadletter_max_bytes,
        fetch_max_bytes=settings.deadletter_max_bytes * 2,
        **settings.aiokafka_security(),
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        max_request_size=settings.deadletter_max_bytes,
        **settings.aiokafka_security(),
    )
    await consumer.start()
    await producer.start()
    try:
        parts = consumer.partitions_for_topic(settings.topic_deadletter)
        if parts is None:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(settings.topic_deadletter) or set()
        tps = [TopicPartition(settings.topic_deadletter, p) for p in sorted(parts)]
        if not tps:
            out.write(f"replay-deadletter: topic {settings.topic_deadletter} has no partitions\n")
            return summary
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if since is not None:
            starts = await consumer.offsets_for_times(
                {tp: int(since.timestamp() * 1000) for tp in tps}
            )
            for tp in tps:
                found = starts.get(tp)
                consumer.seek(tp, found.offset if found is not None else end[tp])
        else:
            await consumer.seek_to_beginning(*tps)
        pending = []
        remaining = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=1000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= end[tp]:
                        continue
                    fut = await _replay_one(
                        rec.value,
                        rec.topic,
                        rec.partition,
                        rec.offset,
                        settings,
                        producer,
                        reason,
                        since,
                        rekey,
                        dry_run,
                        summary,
                    )
                    if fut is not None:
                        pending.append(fut)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await consumer.stop()
    out.write(summary.line() + ("  (dry run: nothing sent)" if dry_run else "") + "\n")
    return summary


async def _replay_one(
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    settings: Settings,
    producer: AIOKafkaProducer,
    reason: DeadLetterReason | None,
    since: datetime | None,
    rekey: bool,
    dry_run: bool,
    summary: ReplaySummary,
) -> asyncio.Future[object] | None:
    try:
        letter = DeadLetter.model_validate_json(value or b"")
    except ValidationError:
        summary.unreadable += 1
        return None
    if reason is not None and letter.reason is not reason:
        summary.skipped_reason += 1
        return None
    if since is not None and letter.rejected_at < since:
        summary.skipped_before_since += 1
        return None
    if letter.value_b64 is None:
        summary.not_replayable += 1
        return None
    original = base64.b64decode(letter.value_b64)
    key = base64.b64decode(letter.key_b64) if letter.key_b64 is not None else None
    if rekey:
        key = _patient_ref(original) or key
    summary.replayed[letter.reason.value] += 1
    if dry_run:
        return None
    header = f"{topic}/{partition}/{offset}".encode()
    fut: asyncio.Future[object] = await producer.send(
        settings.topic_visits, original, key=key, headers=[("tc-replay-of", header)]
    )
    return fut


def _patient_ref(value: bytes) -> bytes | None:
    """The visit's patient_ref, to re-key records that were rejected for their key."""
    try:
        ref = orjson.loads(value).get("patient_ref")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return ref.encode() if isinstance(ref, str) and ref else None
