"""faust's stores as the transaction's stores (streams/tables.py), on a real faust app and its
RocksDB files (no broker): reads and one-batch writes through `TableStore`, never a partition
faust dropped, and changelog recovery that never applies an earlier owner's record over a
later owner's value. What the adapter relies on in faust is pinned in test_faust_contract.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP as FaustTP
from hypothesis import given
from hypothesis import strategies as st

from runtime.settings import Settings
from streams.app import create_app
from streams.tables import (
    EPOCH_KEY,
    TABLE_NAME,
    MemoryStore,
    RocksDBStore,
    TableStore,
    after_prefix,
    pack,
)
from streams.transaction import StaleTransaction, Tag, tag_headers


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def tp(self) -> FaustTP:
        return FaustTP(self.topic, self.partition)


@dataclass
class Event:
    message: Message


def table_store(tmp_path: Path, store: str = "rocksdb") -> TableStore:
    settings = Settings.from_env(
        {"TC_APP_ID": "tc-tables", "TC_DATA_DIR": str(tmp_path), "TC_STORE": store}
    )
    app = create_app(settings)
    return TableStore(app.tables[TABLE_NAME])


def changelog(
    ts: TableStore, partition: int, offset: int, key: bytes, value: bytes | None, tag: Tag | None
) -> Event:
    headers = tag_headers(tag) if tag is not None else []
    return Event(Message(ts.changelog_topic, partition, offset, key, value, headers))


def test_the_app_builds_the_tagged_stores(tmp_path: Path) -> None:
    assert isinstance(table_store(tmp_path).table.data, RocksDBStore)
    assert isinstance(table_store(tmp_path / "m", "memory").table.data, MemoryStore)


def test_writes_go_in_one_batch_with_the_changelog_offset_and_read_back(tmp_path: Path) -> None:
    ts = table_store(tmp_path)
    store: Any = ts.table.data
    store._db_for_partition(2)  # what faust does when the partition is assigned
    ts.write(2, {b"a": b"1", b"b": b"2"}, Tag(3, 9), 41)
    ts.write(2, {b"b": None}, Tag(3, 9), 42)
    assert ts.get(2, b"a") == b"1" and ts.get(2, b"b") is None
    assert list(ts.items(2)) == [(b"a", b"1")]  # faust's offset and our epoch keys hidden
    assert ts.persisted_offset(2) == 42 and ts.epoch(2) == 3
    raw = store._dbs[2].get(b"a")
    assert raw == pack(Tag(3, 9), b"1")  # the tag in front of the value, locally


def test_a_partition_faust_dropped_is_never_reopened(tmp_path: Path) -> None:
    ts = table_store(tmp_path)
    store: Any = ts.table.data
    store._db_for_partition(1)
    ts.write(1, {b"a": b"1"}, Tag(1, 1), 0)
    store.revoke_partitions(ts.table, {FaustTP(ts.changelog_topic, 1)})  # faust's revoke
    with pytest.raises(StaleTransaction):
        ts.get(1, b"a")
    with pytest.raises(StaleTransaction):
        ts.write(1, {b"a": b"2"}, Tag(1, 1), 1)
    assert 1 not in store._dbs


@given(st.binary(max_size=4), st.lists(st.binary(max_size=5), max_size=30))
def test_after_prefix_bounds_exactly_the_keys_with_the_prefix(
    prefix: bytes, keys: list[bytes]
) -> None:
    # Oracle: startswith. A key has the prefix exactly when prefix <= key < the bound.
    bound = after_prefix(prefix)
    for key in [*keys, prefix, prefix + b"\xff", prefix + b"\x00"]:
        inside = prefix <= key and (bound is None or key < bound)
        assert inside == key.startswith(prefix)


def test_the_bound_of_a_visits_prefix_is_the_next_byte() -> None:
    assert after_prefix(b"P-1\x1f") == b"P-1\x20"
    assert after_prefix(b"a\xff\xff") == b"b"
    assert after_prefix(b"\xff") is None and after_prefix(b"") is None


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_a_group_is_read_by_prefix_from_writes_and_from_recovery(tmp_path: Path, kind: str) -> None:
    # A patient's visits (compliance/state_layout.py): keys patient + 0x1F + visit. Oracle: the
    # keys written, filtered by prefix by hand. Other patients' keys - "P-1" is a prefix of
    # "P-10" - and other partitions' never appear.
    ts = table_store(tmp_path, kind)
    store: Any = ts.table.data
    if kind == "rocksdb":
        store._db_for_partition(0)
        store._db_for_partition(1)
    keys = [b"P-1", b"P-1\x1fA", b"P-1\x1fB", b"P-10", b"P-10\x1fA", b"P-1!", b"P-0\x1fZ"]
    keys += [b"P-1 ", b"P-1 \x1fA", b"P-1\x1f\xff\xff"]  # patient "P-1 " (0x20 follows 0x1F)
    ts.write(0, {k: b"v" + k for k in keys}, Tag(1, 1), 5)
    ts.write(1, {b"P-1\x1fC": b"other partition"}, Tag(1, 1), 5)
    assert list(ts.prefixed(0, b"P-1\x1f")) == [
        (b"P-1\x1fA", b"vP-1\x1fA"),
        (b"P-1\x1fB", b"vP-1\x1fB"),
        (b"P-1\x1f\xff\xff", b"vP-1\x1f\xff\xff"),
    ]
    assert [k for k, _ in ts.prefixed(0, b"P-1 \x1f")] == [b"P-1 \x1fA"]
    ts.write(0, {b"P-1\x1fA": None, b"P-1\x1f\xff\xff": None}, Tag(1, 1), 6)
    assert [k for k, _ in ts.prefixed(0, b"P-1\x1f")] == [b"P-1\x1fB"]
    store.apply_changelog_batch(  # a restore adds one and deletes one
        [
            changelog(ts, 0, 7, b"P-1\x1fD", b"restored", Tag(1, 1)),
            changelog(ts, 0, 8, b"P-1\x1fB", None, Tag(1, 1)),
        ],
        lambda k: k,
        lambda v: v,
    )
    assert list(ts.prefixed(0, b"P-1\x1f")) == [(b"P-1\x1fD", b"restored")]
    assert list(ts.prefixed(1, b"P-1\x1f")) == [(b"P-1\x1fC", b"other partition")]


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_recovery_never_applies_an_earlier_owners_record_over_a_later_owners(
    tmp_path: Path, kind: str
) -> None:
    ts = table_store(tmp_path, kind)
    store: Any = ts.table.data
    if kind == "rocksdb":
        store._db_for_partition(0)
    old, new = Tag(1, 5), Tag(2, 6)
    store.apply_changelog_batch(
        [
            changelog(ts, 0, 0, b"legacy", b"v0", None),  # written before tags existed
            changelog(ts, 0, 1, b"k", b"old", old),
            changelog(ts, 0, 2, b"k", b"new", new),
            changelog(ts, 0, 3, b"k", b"stale", old),  # the old owner's late write
            changelog(ts, 0, 4, b"legacy", b"v1", old),
            changelog(ts, 0, 5, b"gone", b"x", new),
            changelog(ts, 0, 6, b"gone", None, old),  # a late tombstone: skipped too
        ],
        lambda k: k,
        lambda v: v,
    )
    assert ts.get(0, b"k") == b"new"
    assert ts.get(0, b"legacy") == b"v1" and ts.get(0, b"gone") == b"x"
    assert ts.epoch(0) == 2
    # A later batch (the next recovery) compares against what the store holds.
    store.apply_changelog_batch(
        [changelog(ts, 0, 7, b"k", b"stale again", old), changelog(ts, 0, 8, b"k", b"n2", new)],
        lambda k: k,
        lambda v: v,
    )
    assert ts.get(0, b"k") == b"n2"
    if kind == "rocksdb":
        assert ts.persisted_offset(0) == 8
        assert store._dbs[0].get(EPOCH_KEY) == b"2"


@pytest.mark.asyncio
async def test_keys_whose_restore_skipped_a_late_record_are_written_again(tmp_path: Path) -> None:
    """The late record is the changelog's last for its key (compaction keeps the last): the
    owner writes the key again after the restore, with its own tag, so a restore from scratch
    later cannot apply the late value."""
    from streams.checkpoint import TP
    from streams.metrics import Metrics
    from streams.pipeline import Pipeline
    from streams.publish import Publisher
    from streams.rebalance import repair_work
    from streams.transaction import header_tag
    from tests.unit.streams.test_pipeline import Broker, settle

    ts = table_store(tmp_path)
    store: Any = ts.table.data
    store._db_for_partition(0)
    store.apply_changelog_batch(
        [
            changelog(ts, 0, 0, b"k", b"new", Tag(2, 6)),
            changelog(ts, 0, 1, b"k", b"stale", Tag(1, 5)),
            changelog(ts, 0, 2, b"j", b"fine", Tag(2, 6)),
        ],
        lambda k: k,
        lambda v: v,
    )
    broker, metrics = Broker(), Metrics()

    async def commit(offsets: Any) -> bool:
        return True

    pipeline = Pipeline(
        _Nothing(), Publisher(broker.send, metrics), commit, metrics, generation=lambda: 9
    )
    pipeline.assigned([TP("in", 0)])
    await pipeline.run_timer(repair_work(pipeline, (ts,)))
    for _ in range(3):
        await settle()
        broker.ack()
    [(record, _)] = broker.sent
    assert (record.topic, record.batch) == (ts.changelog_topic, ((b"k", b"new"),))
    assert header_tag(record.headers) == Tag(3, 9)
    assert ts.take_skipped(0) == set()  # repaired once


class _Nothing:
    def handle(self, rec: Any, txn: Any) -> list[Any]:
        return []

    def failed(self, rec: Any, exc: BaseException) -> Any:
        raise AssertionError(exc)


def test_a_store_last_written_too_long_ago_is_wiped_and_restored_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A visit folded by another owner is deleted with a tombstone, which compaction may remove
    # after the changelog's delete.retention.ms (24 h by default). A store kept since before it
    # would keep the visit: faust restores only from the store's persisted offset. So a store
    # last written more than TC_STATE_MAX_STALE_HOURS (20 h) ago is wiped when its partition is
    # assigned (faust asks `persisted_offset` then) and rebuilt from the changelog.
    now = [1_000_000.0]
    monkeypatch.setattr(RocksDBStore, "clock", staticmethod(lambda: now[0]))
    ts = table_store(tmp_path)
    store: Any = ts.table.data
    tp = FaustTP(ts.changelog_topic, 0)
    store._db_for_partition(0)
    ts.write(0, {b"P\x1fA": b"folded elsewhere later"}, Tag(1, 1), 41)
    now[0] += 19.9 * 3600  # within the bound: kept, restore continues from offset 41
    assert store.persisted_offset(tp) == 41 and ts.get(0, b"P\x1fA") is not None
    now[0] += 0.2 * 3600  # 20.1 h since the last write
    assert store.persisted_offset(tp) is None  # faust restores from the changelog's start
    assert list(store._dbs[0].keys()) == []  # nothing kept, not even faust's offset
    assert ts.get(0, b"P\x1fA") is None and ts.epoch(0) == 0
