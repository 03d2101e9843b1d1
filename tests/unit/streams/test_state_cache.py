"""Decoded histories kept in memory (streams/state_cache.py; issue 19 item 1).

The oracle is the worker without the cache: every visit decodes what the transaction reads.
With the cache on, the same records give the same outputs and the same stored bytes, also when
the store's values change under the cache (another owner's writes, a restore, a transaction
given up) - the cache answers only for the bytes it was built from (a patient's head and visit
keys, compliance/state_layout.py)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from compliance.state_layout import EMPTY
from runtime.settings import Settings
from streams.checkpoint import TP
from streams.metrics import Metrics
from streams.pipeline import Pipeline
from streams.processor import Output, Record, VisitProcessor
from streams.publish import Publisher
from streams.state_cache import ENTRY_OVERHEAD, DecodedCache
from streams.transaction import LOCAL, Chain, DictStore, commit_now
from synthetic.visits import EpisodeGenerator, VisitGenerator
from tests.unit.streams.test_pipeline import Broker

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def get(
        self, cache: DecodedCache[str], partition: int, key: bytes, raw: bytes
    ) -> tuple[str, bool]:
        def decode() -> str:
            self.calls += 1
            return raw.decode()

        return cache.get(partition, key, raw, len(raw), decode)


def test_a_hit_needs_the_same_bytes_not_only_the_same_key() -> None:
    c = Counting()
    cache: DecodedCache[str] = DecodedCache(10_000, weight=1)
    assert c.get(cache, 0, b"k", b"one") == ("one", False)
    assert c.get(cache, 0, b"k", bytes(bytearray(b"one"))) == ("one", True)  # equal, not identical
    assert c.get(cache, 0, b"k", b"two") == ("two", False)  # the store moved on: decoded again
    assert c.get(cache, 1, b"k", b"two") == ("two", False)  # another partition's key
    assert c.calls == 3
    cache.put(0, b"k", b"three", 5, "3")  # what the stage just wrote
    assert c.get(cache, 0, b"k", b"three") == ("3", True)


def test_bounded_in_bytes_least_recently_used_first_out() -> None:
    cost = 10 + ENTRY_OVERHEAD  # a 10-byte value at weight 1
    c = Counting()
    cache: DecodedCache[str] = DecodedCache(3 * cost, weight=1)
    for key in (b"a", b"b", b"c"):
        c.get(cache, 0, key, key * 10)
    c.get(cache, 0, b"a", b"a" * 10)  # a is now the most recently used
    c.get(cache, 0, b"d", b"d" * 10)  # over budget: b goes
    assert cache.size == 3 * cost and cache.evictions == 1
    assert [c.get(cache, 0, k, k * 10)[1] for k in (b"a", b"c", b"d")] == [True, True, True]
    assert c.get(cache, 0, b"b", b"b" * 10)[1] is False
    cache.put(0, b"e", b"e" * 10_000, 10_000, "too big for the budget")  # never held
    assert c.get(cache, 0, b"e", b"e" * 10_000)[1] is False and cache.size <= 3 * cost


def test_off_by_default() -> None:
    stage = VisitProcessor(Settings(), Metrics(), clock=lambda: NOW, table=DictStore())
    assert stage.histories is None


def test_dropping_partitions_gives_their_memory_back() -> None:
    c = Counting()
    cache: DecodedCache[str] = DecodedCache(10_000, weight=1)
    c.get(cache, 0, b"a", b"x")
    c.get(cache, 1, b"a", b"y")
    cache.drop({1})
    assert len(cache) == 1 and cache.size == 1 + ENTRY_OVERHEAD
    assert c.get(cache, 0, b"a", b"x")[1] is True and c.get(cache, 1, b"a", b"y")[1] is False


def _feed(kind: str) -> list[Record]:
    gen = (
        VisitGenerator(seed=5, patients=40)
        if kind == "visits"
        else EpisodeGenerator(seed=5, patients=15)
    )
    return [
        Record("visits", 0, offset, r.key, r.value, None)
        for offset, r in enumerate(gen.records(600))
    ]


def _run(records: list[Record], cache_mb: int, seed: int) -> tuple[list[Output], DictStore, int]:
    """The check stage over `records`, one transaction per record, with the same disturbances
    for every run (drawn from `seed`): a transaction given up (its record processed again),
    and another owner's value written under a patient's key."""
    settings = Settings.from_env({"TC_STATE_CACHE_MB": str(cache_mb)})
    store = DictStore()
    stage = VisitProcessor(settings, Metrics(), clock=lambda: NOW, table=store)
    chain, rnd, out = Chain(), random.Random(seed), []
    # patient -> a visit key's early value, which another owner might write again
    other: dict[bytes | None, tuple[bytes, bytes]] = {}
    for rec in records:
        if rnd.random() < 0.1:  # given up: never durable, the record comes again
            abandoned = chain.begin()
            stage.handle(rec, abandoned)
            chain.clear()
        if rnd.random() < 0.1 and rec.key in other:
            store.write(rec.partition, dict([other[rec.key]]), LOCAL, None)
        txn = chain.begin()
        out.extend(stage.handle(rec, txn))
        commit_now(txn)
        visits = list(store.prefixed(rec.partition, (rec.key or b"") + b"\x1f"))
        if visits and rec.key not in other:
            other[rec.key] = visits[0]  # an early state of a visit: "another owner's"
    return out, store, stage.histories.hits if stage.histories is not None else 0


def test_the_worker_judges_the_same_with_and_without_the_cache() -> None:
    for kind in ("visits", "episodes"):
        records = _feed(kind)
        plain, plain_store, plain_hits = _run(records, 0, seed=11)
        cached, cached_store, hits = _run(records, 32, seed=11)
        assert plain_hits == 0 and hits > len(records) // 3  # the cache was used, much
        assert [(o.topic, o.key, o.value) for o in cached] == [
            (o.topic, o.key, o.value) for o in plain
        ]
        assert cached_store.data == plain_store.data
        assert any(o.topic == Settings().topic_alerts for o in plain)


@pytest.mark.asyncio
async def test_a_revoke_gives_the_partitions_cached_histories_back() -> None:
    broker, metrics = Broker(), Metrics()
    settings = Settings.from_env({"TC_STATE_CACHE_MB": "1"})
    stage = VisitProcessor(settings, metrics, clock=lambda: NOW, table=DictStore())
    pipeline = Pipeline(stage, Publisher(broker.send, metrics), _ok, metrics)
    pipeline.assigned([TP(settings.topic_visits, 0), TP(settings.topic_visits, 1)])
    assert stage.histories is not None
    for partition in (0, 1):
        stage.histories.put(partition, b"P", b"{}", 2, EMPTY)
    await pipeline.on_revoked([TP(settings.topic_visits, 1)], 1.0)
    assert stage.histories.get(0, b"P", b"{}", 2, lambda: EMPTY)[1] is True
    assert len(stage.histories) == 1


async def _ok(offsets: Mapping[TP, int]) -> bool:
    return True
