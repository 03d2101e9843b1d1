"""The state transaction without a pipeline (streams/transaction.py): reads go through the
transaction's own changes, then earlier transactions still in flight (newest first), then the
store; a savepoint undoes a record's changes; a scan sees the same overlay."""

from __future__ import annotations

import pytest

from streams.transaction import (
    LOCAL,
    UNTAGGED,
    Chain,
    DictStore,
    Tag,
    commit_now,
    header_tag,
    tag_headers,
)

P = 3


def test_reads_see_own_changes_then_earlier_transactions_in_flight_then_the_store() -> None:
    store, chain = DictStore(), Chain()
    store.write(P, {b"a": b"store", b"b": b"store", b"c": b"store"}, Tag(1, 1), 10)
    first, second = chain.begin(), chain.begin()
    first.put(store, P, b"a", b"first")
    first.put(store, P, b"b", None)  # deleted in flight
    second.put(store, P, b"a", b"second")
    assert second.get(store, P, b"a") == b"second"  # its own
    assert second.get(store, P, b"b") is None  # the earlier transaction's delete
    assert second.get(store, P, b"c") == b"store"
    assert first.get(store, P, b"a") == b"first"  # never a later transaction's change
    assert first.get(store, P + 1, b"a") is None  # another partition: its own store
    chain.done(first)  # durable: its changes are now the store's business
    assert second.get(store, P, b"b") == b"store"  # (this store never got first's delete)


def test_a_savepoint_undoes_exactly_the_changes_after_it() -> None:
    store, chain = DictStore(), Chain()
    txn = chain.begin()
    txn.put(store, P, b"kept", b"1")
    mark = txn.mark()
    txn.put(store, P, b"kept", b"2")
    txn.put(store, P, b"new", b"x")
    txn.put(store, P + 1, b"other", b"y")
    txn.rollback(mark)
    assert txn.get(store, P, b"kept") == b"1"
    assert txn.get(store, P, b"new") is None
    assert txn.partitions() == {(store, P)}  # the emptied partition is gone
    txn.rollback(0)
    assert not txn


def test_a_scan_sees_the_chain_over_the_store() -> None:
    store, chain = DictStore(), Chain()
    store.write(P, {b"a": b"1", b"b": b"1"}, Tag(1, 1), None)
    first = chain.begin()
    first.put(store, P, b"a", None)
    first.put(store, P, b"c", b"first")
    second = chain.begin()
    second.put(store, P, b"c", b"second")
    assert sorted(second.items(store, P)) == [(b"b", b"1"), (b"c", b"second")]
    assert sorted(first.items(store, P)) == [(b"b", b"1"), (b"c", b"first")]


def test_a_group_read_sees_the_chain_over_the_store_as_a_scan_does() -> None:
    # Oracle: the full scan (`items`) filtered by prefix by hand.
    store, chain = DictStore(), Chain()
    store.write(
        P, {b"p\x1fa": b"1", b"p\x1fb": b"1", b"p": b"head", b"q\x1fa": b"1"}, Tag(1, 1), None
    )
    first = chain.begin()
    first.put(store, P, b"p\x1fa", None)
    first.put(store, P, b"p\x1fc", b"first")
    second = chain.begin()
    second.put(store, P, b"p\x1fc", b"second")
    mark = second.mark()
    second.put(store, P, b"p\x1fd", b"rolled back")
    second.rollback(mark)
    for txn in (first, second):
        expected = sorted(kv for kv in txn.items(store, P) if kv[0].startswith(b"p\x1f"))
        assert txn.prefixed(store, P, b"p\x1f") == expected
    assert second.prefixed(store, P, b"p\x1f") == [(b"p\x1fb", b"1"), (b"p\x1fc", b"second")]


def test_commit_now_writes_the_changes_and_leaves_the_chain() -> None:
    store, chain = DictStore(), Chain()
    txn = chain.begin()
    txn.put(store, P, b"a", b"1")
    commit_now(txn)
    assert store.get(P, b"a") == b"1" and len(chain) == 0
    assert store.epoch(P) == 1


@pytest.mark.parametrize("tag", [Tag(0, 0), Tag(1, 7), Tag(2**40, 2**31 - 1)])
def test_tags_round_trip_through_headers_and_order_by_epoch_then_generation(tag: Tag) -> None:
    assert header_tag(tag_headers(tag)) == tag
    assert header_tag(dict(tag_headers(tag))) == tag
    assert header_tag(None) == UNTAGGED and header_tag([("other", b"x")]) == UNTAGGED
    assert Tag(2, 0) > Tag(1, 99) > Tag(1, 98) > UNTAGGED


def test_dict_store_prefix_reads_match_a_scan_through_writes_and_direct_changes() -> None:
    # DictStore reads a prefix through a sorted key index (a seek, as RocksDB). Oracle: a
    # scan of the partition. Writes add, overwrite and delete (also absent keys); `data` is
    # public, so a direct change must not leave the index stale (a review found it did).
    import random

    rng = random.Random(7)
    store = DictStore()

    def scan(prefix: bytes) -> list[tuple[bytes, bytes]]:
        return sorted((k, v) for k, v in store.data.get(0, {}).items() if k.startswith(prefix))

    keys = [f"P{p}\x1f{v}".encode() for p in range(5) for v in range(5)] + [b"P1", b"P10"]
    for step in range(300):
        changes = {k: (None if rng.random() < 0.3 else b"%d" % step) for k in rng.sample(keys, 4)}
        store.write(0, changes, LOCAL, None)
        if step % 50 == 0:
            store.data.setdefault(0, {})[b"P3\x1fdirect"] = b"x"
        for prefix in (b"P1", b"P1\x1f", b"P3\x1f", b"Q", b""):
            assert list(store.prefixed(0, prefix)) == scan(prefix)
