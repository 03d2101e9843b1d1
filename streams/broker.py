"""What the pipelines ask of Kafka, through faust's producer and its aiokafka consumer: send an
output, commit explicit offsets, read a committed offset, and re-read a partition from an offset
(the offset guard's seek). High-water marks: streams/health.py `Health.highwater`."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import faust
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
        return await self.app.producer.send(
            out.topic,
            out.key,
            out.value,
            partition=out.partition,
            timestamp=None,
            headers=out.headers,
        )

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
