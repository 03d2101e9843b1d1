"""What the pipelines ask of Kafka, through faust's producer and its aiokafka consumer: send an
output, commit explicit offsets, read a committed offset, and re-read a partition from an offset
(the offset guard's seek). High-water marks: streams/health.py `Health.highwater`."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.exceptions import ProducerSendError
from faust.types import TP as FaustTP

from streams.checkpoint import TP
from streams.offsets import OffsetProbe
from streams.processor import Output


class Broker:
    def __init__(self, app: faust.App, probe: OffsetProbe) -> None:
        self.app = app
        self.probe = probe

    @property
    def _consumer(self) -> Any:
        # faust's ConsumerT interface lacks `_commit(offsets)` and `_committed_offset`, which
        # its aiokafka Consumer has (pinned: tests/unit/streams/test_faust_contract.py).
        return self.app.consumer

    async def send(self, out: Output) -> Awaitable[Any]:
        """Hand one output to the producer; returns the future its acknowledgement resolves."""
        if out.batch:
            return await self._send_batch(out)
        return await self.app.producer.send(
            out.topic,
            out.key,
            out.value,
            partition=out.partition,
            timestamp=None,
            headers=out.headers,
        )

    async def _send_batch(self, out: Output) -> Awaitable[Any]:
        """The output's records as one Kafka record batch, through the aiokafka producer under
        faust's (faust has no batch send; pinned: tests/unit/streams/test_faust_contract.py).
        aiokafka queues a batch built by the caller as its own record batch, sent and retried
        as a unit (aiokafka/producer/message_accumulator.py `add_batch`)."""
        assert out.partition is not None
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        size = sum(len(k) + len(v or b"") for k, v in out.batch)
        builder = BatchBuilder(size + 64 * len(out.batch) + 1024, 0)  # 0: no compression
        headers = out.headers or []
        for key, value in out.batch:
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise RuntimeError("a changelog record batch was refused by its own builder")
        builder.close()  # nothing else may be appended to it (aiokafka's send_batch docs)
        try:
            return cast(
                Awaitable[Any],
                await producer.send_batch(builder, out.topic, partition=out.partition),
            )
        except KafkaError as exc:  # as faust's own send wraps them
            raise ProducerSendError(f"Error while sending a batch: {exc!r}") from exc

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        # The transport consumer's commit of explicit offsets (faust's own `commit()` commits
        # what its ack bookkeeping allows, which never includes our input topics).
        committed = await self._consumer._commit(
            {FaustTP(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
        )
        return bool(committed)

    def committed(self, tp: TP) -> int | None:
        offset = self._consumer._committed_offset.get(FaustTP(tp.topic, tp.partition))
        return int(offset) if offset is not None else None

    async def seek(self, tp: TP, offset: int) -> None:
        # On the consumer's own thread and loop (seek_wait): faust's Consumer.seek calls
        # aiokafka's seek from this loop, racing the thread's fetcher (seen: KeyError in
        # aiokafka's fetcher and a crashed Fetcher).
        await self._consumer.seek_wait({FaustTP(tp.topic, tp.partition): offset})

    async def resolve_gap(self, tp: TP, expected: int) -> int:
        """Re-read the partition from the broker's first offset at or after `expected`."""
        first = await self.probe.first_offset(tp, expected)
        await self.seek(tp, first)
        return first
