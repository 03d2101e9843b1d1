"""Outputs merged into record batches (streams/broker.py `Broker.group`) on the real broker: each
record lands on the partition the producer's own `send` puts its key on (what consumers keyed by
patient or visit rely on), with its key and value, each partition's records in their order, one
record batch per group. Grouping itself (order, sizes, what goes alone): tests/unit/streams/
test_broker_group.py; outputs held while a topic refuses them, across SIGKILL, with batches:
tests/integration/test_delivery.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from streams.broker import Broker
from streams.processor import Output
from tests.integration.harness import BROKERS, Topics, consume, create_topics

pytestmark = pytest.mark.timeout(120)


@pytest.mark.asyncio
async def test_batched_records_land_where_the_producers_send_puts_their_keys() -> None:
    t = Topics.unique("batches")
    await create_topics(t)  # 4 partitions each
    producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all")
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes, **_: Any) -> Any:
        return await producer.send(topic, value, key=key)

    app = SimpleNamespace(
        producer=SimpleNamespace(_ensure_producer=lambda: producer, send=send),
        conf=SimpleNamespace(producer_max_batch_size=16_384, producer_max_request_size=1 << 20),
    )
    broker = Broker(app, None)  # type: ignore[arg-type]
    keys = [b"P-%03d" % i for i in range(60)]
    try:
        # The producer's own sends, to one topic (this also gives it both topics' metadata).
        await producer.client._wait_on_metadata(t.checked)
        await asyncio.gather(*[await producer.send(t.alerts, b"x", key=k) for k in keys])
        # The same keys through the batch path, three records a key, to the other topic.
        outs = [Output(t.checked, k, b"%s#%d" % (k, n)) for n in range(3) for k in keys]
        grouped = broker.group(outs)
        assert len(grouped) <= 4  # one record batch per partition (3 x 60 small records)
        assert all(o.batch for o in grouped)
        await asyncio.gather(*[await broker.send(o) for o in grouped])
        # A third topic: the partitions now come from the cache the second one filled.
        await producer.client._wait_on_metadata(t.status)
        again = broker.group([Output(t.status, k, b"s") for k in keys])
        assert all(o.batch for o in again)
        await asyncio.gather(*[await broker.send(o) for o in again])
    finally:
        await producer.stop()
    sent = await consume([t.alerts], len(keys))
    batched = await consume([t.checked], len(outs))
    where = {r.key: r.partition for r in sent}
    assert len(where) == len(keys)
    assert len(batched) == len(outs)
    for r in batched:
        assert r.partition == where[r.key]
    for r in await consume([t.status], len(keys)):
        assert r.partition == where[r.key]
    for k in keys:  # each key's records in the order they were given
        assert [r.value for r in batched if r.key == k] == [b"%s#%d" % (k, n) for n in range(3)]
