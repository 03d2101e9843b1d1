"""streams/broker.py `Broker.group`: a batch's outputs bound for one partition of a topic go as
record batches. What must hold (each checked against a simple computation of its own, not the
code under test): every record is sent once, with its key and value; each partition's records
keep their order; a batch holds only records of its topic and partition, the partition being
the one the producer's partitioner gives the key (aiokafka's DefaultPartitioner: murmur2 of
the key, as the Java client); no batch is larger than the producer's batch size; outputs the
batch path must not take (dead letters that shrink, records with headers, a partition or an
ack callback of their own, oversized ones, topics without metadata) go alone, unchanged. The
same partition as the producer's own `send` on a real broker: tests/integration/
test_output_batches.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.broker import Broker
from streams.processor import Output

PARTITIONS = {"alerts": 4, "alerts-2": 4, "status": 3, "checked": 1}
LIMIT = 1_000


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = PARTITIONS.get(topic)
        return None if n is None else set(range(n))


class _Producer:
    """The two things `group` reads of aiokafka's producer, with its default partitioner."""

    def __init__(self) -> None:
        self.client = SimpleNamespace(cluster=_Cluster())
        self._partitioner = DefaultPartitioner()
        self.calls = 0

    def _partition(self, topic: str, partition: Any, key: bytes, *_: Any) -> int:
        self.calls += 1
        n = PARTITIONS[topic]
        return int(self._partitioner(key, list(range(n)), list(range(n))))


def _broker(producer: _Producer | None = None, request_limit: int = 1 << 20) -> Broker:
    producer = producer or _Producer()
    app = SimpleNamespace(
        producer=SimpleNamespace(_ensure_producer=lambda: producer),
        conf=SimpleNamespace(
            producer_max_batch_size=LIMIT, producer_max_request_size=request_limit
        ),
    )
    return Broker(app, None)  # type: ignore[arg-type]


def _oracle_partition(topic: str, key: bytes) -> int:
    # Kafka's default partitioner for a keyed record: positive murmur2 of the key modulo the
    # partition count (org.apache.kafka.clients.producer.internals.BuiltInPartitioner).
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS[topic]


def _records(outs: list[Output]) -> list[tuple[str, int | None, bytes | None, bytes | None]]:
    """What goes to the broker, in send order: (topic, partition, key, value) per record."""
    flat = []
    for o in outs:
        if o.batch:
            flat.extend((o.topic, o.partition, k, v) for k, v in o.batch)
        else:
            flat.append((o.topic, o.partition, o.key, o.value))
    return flat


def _size(key: bytes | None, value: bytes | None) -> int:
    return len(key or b"") + len(value or b"") + 64


def test_records_of_one_partition_go_as_one_batch_in_order() -> None:
    outs = [Output("alerts", b"P-%d" % (i % 5), b"a%d" % i) for i in range(40)]
    grouped = _broker().group(outs)
    assert len(grouped) < len(outs)
    for o in grouped:
        assert o.batch and o.partition is not None
        assert {_oracle_partition("alerts", k) for k, _ in o.batch} == {o.partition}
    by_partition: dict[int, list[bytes | None]] = {}
    for o in outs:
        assert o.key is not None
        by_partition.setdefault(_oracle_partition("alerts", o.key), []).append(o.value)
    sent: dict[int, list[bytes | None]] = {}
    for o in grouped:
        assert o.partition is not None
        sent.setdefault(o.partition, []).extend(v for _, v in o.batch)
    assert sent == by_partition


def test_outputs_the_batch_path_must_not_take_go_alone_and_keep_their_partitions_order() -> None:
    letter = Output("alerts", b"P-1", b"dead", shrink=lambda: Output("alerts", None, b"x"))
    headed = Output("alerts", b"P-1", b"h", headers=[("h", b"1")])
    placed = Output("alerts", b"P-1", b"p", partition=2)
    acked = Output("alerts", b"P-1", b"c", on_acked=lambda _: None)
    big = Output("alerts", b"P-1", b"x" * LIMIT)
    unknown = Output("no-metadata", b"P-1", b"u")
    tombstone = Output("alerts", b"P-1", None)
    special = [letter, headed, placed, acked, big, unknown, tombstone]
    outs = []
    for i, s in enumerate(special):
        outs += [Output("alerts", b"P-1", b"before-%d" % i), s, Output("alerts", b"P-1", b"after")]
    grouped = _broker().group(outs)
    for s in special:
        assert any(g is s for g in grouped)  # the same object, alone
    # The records around each one are not merged across it: P-1's alerts keep their order.
    values = [v for t, _, k, v in _records(grouped) if t == "alerts" and k == b"P-1"]
    assert values == [o.value for o in outs if o.topic == "alerts"]


def test_a_record_alone_in_its_partition_goes_as_it_came() -> None:
    one = Output("checked", b"P-1", b"c")
    assert _broker().group([one, Output("status", b"V-1", b"s")])[0] is one


def test_no_batch_exceeds_the_producers_batch_size() -> None:
    outs = [Output("checked", b"P-%d" % i, b"v" * 300) for i in range(20)]
    grouped = _broker().group(outs)
    for o in grouped:
        assert sum(_size(k, v) for k, v in o.batch) <= LIMIT
    # One partition; a record weighs 3-4 + 300 + 64 bytes, so two fit in 1,000 and three do
    # not: 20 records make 10 batches.
    assert len(grouped) == 10


def test_a_request_limit_below_the_batch_size_bounds_batches_and_larger_records_go_alone() -> None:
    # aiokafka refuses a single send over max_request_size (TooLargeForClient: the worker
    # stops) but does not check a caller-built batch: such a record must not hide in one.
    big = Output("checked", b"P-1", b"v" * 500)
    outs = [Output("checked", b"P-1", b"v" * 100) for _ in range(6)] + [big]
    grouped = _broker(request_limit=400).group(outs)
    assert any(o is big for o in grouped)
    for o in grouped:
        assert sum(_size(k, v) for k, v in o.batch) <= 400


def test_a_keys_partition_is_asked_of_the_producer_once() -> None:
    producer = _Producer()
    broker = _broker(producer)
    outs = [Output("alerts", b"P-%d" % (i % 3), b"v") for i in range(30)]
    broker.group(outs)
    broker.group(outs)
    assert producer.calls == 3
    # Another topic with as many partitions: the same answers (murmur2 modulo the count).
    broker.group([Output("alerts-2", b"P-%d" % i, b"v") for i in range(3)])
    assert producer.calls == 3
    broker.group([Output("status", b"P-%d" % i, b"v") for i in range(3)])  # 3 partitions
    assert producer.calls == 6


_TOPICS = st.sampled_from(["alerts", "status", "checked", "no-metadata"])
_OUTPUT = st.builds(
    lambda topic, key, size, kind: Output(
        topic,
        None if kind == "no-key" else b"K-%d" % key,
        b"v" * size,
        partition=0 if kind == "placed" else None,
        headers=[("h", b"1")] if kind == "headers" else None,
        shrink=(lambda: Output(topic, None, b"s")) if kind == "letter" else None,
    ),
    _TOPICS,
    st.integers(0, 12),
    st.integers(0, 1_100),
    st.sampled_from(["plain"] * 6 + ["no-key", "placed", "headers", "letter"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_OUTPUT, max_size=60))
def test_every_record_is_sent_once_and_every_partition_keeps_its_order(
    outs: list[Output],
) -> None:
    grouped = _broker().group(outs)
    # Once each: the same (topic, key, value) multiset.
    assert sorted((repr((t, k, v)) for t, _, k, v in _records(grouped))) == sorted(
        repr((o.topic, o.key, o.value)) for o in outs
    )
    for o in grouped:
        if o.batch:
            assert len(o.batch) >= 2 and o.topic in PARTITIONS
            assert sum(_size(k, v) for k, v in o.batch) <= LIMIT
            assert {_oracle_partition(o.topic, k or b"") for k, _ in o.batch} == {o.partition}
        else:
            assert any(o is x for x in outs)  # alone: the output itself

    # Order: records that may share a partition keep their relative order. A record sent
    # alone without a partition may land on any of its topic's partitions, so it is ordered
    # against every record of its topic.
    def place(t: str, p: int | None, k: bytes | None) -> tuple[str, int | None]:
        if p is None and k is not None and t in PARTITIONS:
            return (t, _oracle_partition(t, k))
        return (t, p)

    sent = [(place(t, p, k), (t, k, v)) for t, p, k, v in _records(grouped)]
    given_order = [(place(o.topic, o.partition, o.key), (o.topic, o.key, o.value)) for o in outs]

    def conflicts(a: tuple[str, int | None], b: tuple[str, int | None]) -> bool:
        return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])

    position: dict[int, int] = {}
    used: set[int] = set()
    for i, (_, rec) in enumerate(given_order):  # match equal records first come, first served
        j = next(j for j, (_, r) in enumerate(sent) if r == rec and j not in used)
        used.add(j)
        position[i] = j
    for i in range(len(given_order)):
        for j in range(i + 1, len(given_order)):
            if (
                conflicts(given_order[i][0], given_order[j][0])
                and given_order[i][1] != given_order[j][1]
            ):
                assert position[i] < position[j], (given_order[i], given_order[j])
