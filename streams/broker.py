"""What the pipelines ask of Kafka, through faust's producer and its aiokafka consumer: send an
output, commit explicit offsets, read a committed offset, and re-read a partition from an offset
(the offset guard's seek). High-water marks: streams/health.py `Health.highwater`."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.exceptions import NotReady, ProducerSendError
from faust.types import TP as FaustTP

from streams.checkpoint import TP
from streams.offsets import OffsetProbe
from streams.processor import Output, record_bytes

#: Keys whose partition `Broker.group` remembers, then it starts again (~160 bytes each with
#: 36-byte ids: ~3-5 MB at most).
PARTITION_CACHE = 20_000


class _Group:
    """Outputs bound for one partition of a topic, to go as one record batch."""

    __slots__ = ("members", "partition", "size")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.members: list[Output] = []
        self.size = 0

    def output(self) -> Output:
        if len(self.members) == 1:
            return self.members[0]  # alone: sent as it came, by the producer's own send
        first = self.members[0]
        return Output(
            first.topic,
            None,
            None,
            self.partition,
            batch=tuple((m.key or b"", m.value) for m in self.members),
        )


class Broker:
    def __init__(self, app: faust.App, probe: OffsetProbe) -> None:
        self.app = app
        self.probe = probe
        #: (partition count, key) -> the default partitioner's partition for the key (murmur2
        #: in Python, ~2.8 us an output). It depends on nothing else: the key's murmur2 modulo
        #: the count, over the topic's partitions in id order. A visit's alerts, checked and
        #: status records share their key (the visit id), so they ask it once.
        self._partitions: dict[tuple[int, bytes], int] = {}

    @property
    def batch_bytes(self) -> int:
        """The most bytes `group` puts in one record batch: the producer's own batch size
        (faust's producer_max_batch_size, aiokafka's max_batch_size: 16 KiB by default), so
        the broker gets batches no larger than the producer builds from single sends; and no
        more than its request limit (producer_max_request_size, TC_DEADLETTER_MAX_BYTES),
        which aiokafka checks on single sends only: a record over it goes alone and is
        refused by the producer as before."""
        conf = self.app.conf
        return min(int(conf.producer_max_batch_size), int(conf.producer_max_request_size))

    def group(self, outputs: Sequence[Output]) -> list[Output]:
        """The outputs, those bound for one partition of a topic merged into record batches
        (`Output.batch`) in their order: one hand-over to the producer and one future per
        batch instead of per record (the publishing path went from 8.4% to 3.5% of the worker's
        samples: bench/RESULTS.md, "issue 19, eighth session"). The partition is the one the producer's own
        partitioner gives the key, as `send` would. Outputs the batch path does not take go
        alone, as before: dead letters (which shrink when refused as too large), records with
        headers or a partition of their own, over `batch_bytes`, or of a topic whose metadata
        the producer does not have yet; each closes the open batches of its topic first, so
        every partition's records keep their order."""
        try:
            producer: Any = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        except NotReady:  # not started (faust's test contexts): as they come
            return list(outputs)
        limit = self.batch_bytes
        counts: dict[str, int] = {}  # topic -> its partitions (0: metadata not known yet)
        cache = self._partitions if type(producer._partitioner) is DefaultPartitioner else None
        out: list[Output | _Group] = []
        open_: dict[tuple[str, int], _Group] = {}
        for o in outputs:
            size = record_bytes(o.key, o.value)
            n = 0
            if (
                o.key is not None
                and o.value is not None
                and o.partition is None
                and not o.headers
                and o.shrink is None
                and o.on_acked is None
                and not o.batch
                and size <= limit
            ):
                n = counts.get(o.topic, -1)
                if n < 0:
                    known = producer.client.cluster.partitions_for_topic(o.topic)
                    n = counts[o.topic] = len(known) if known else 0
            if not n:
                for where in [w for w in open_ if w[0] == o.topic]:
                    del open_[where]
                out.append(o)
                continue
            ident = (n, o.key or b"")  # a key is set: n > 0
            partition = cache.get(ident, -1) if cache is not None else -1
            if partition < 0:
                partition = producer._partition(o.topic, None, o.key, o.value, o.key, o.value)
                if cache is not None:
                    if len(cache) >= PARTITION_CACHE:
                        cache.clear()
                    cache[ident] = partition
            where = (o.topic, partition)
            group = open_.get(where)
            if group is None or group.size + size > limit:
                group = open_[where] = _Group(partition)
                out.append(group)
            group.members.append(o)
            group.size += size
        return [g.output() if isinstance(g, _Group) else g for g in out]

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
        """The output's records as one Kafka record batch (no compression, as the worker's
        producer is configured), through the aiokafka producer under faust's (faust has no
        batch send; pinned: tests/unit/streams/test_faust_contract.py). aiokafka queues a
        batch built by the caller as its own record batch, sent and retried as a unit
        (aiokafka/producer/message_accumulator.py `add_batch`)."""
        assert out.partition is not None
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        size = sum(record_bytes(k, v) for k, v in out.batch)
        builder = BatchBuilder(size + 1024, 0)  # 0: no compression
        headers = out.headers or []
        for key, value in out.batch:
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise RuntimeError("a record batch was refused by its own builder")
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
