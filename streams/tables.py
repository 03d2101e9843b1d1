"""faust's table stores, adapted to the state transaction (streams/transaction.py).

The one module that uses faust's private table internals (its stores' `_dbs`, `offset_key`,
`data`, `_key_partition`, `set_persisted_offset`); what it relies on is pinned by
tests/unit/streams/test_faust_contract.py.

- `TableStore` is the transaction's `Store` over a faust Table: it reads a partition's local
  store only while faust holds it open (faust's own `_db_for_partition` would reopen a store it
  dropped at a revoke: `StaleTransaction` instead), and writes a transaction's changes, the
  partition's highest epoch and the changelog offset that holds them in one RocksDB write batch.
- `RocksDBStore` / `MemoryStore` (`tcrocksdb://`, `tcmemory://`, registered as `faust.stores`
  entry points) are faust's stores whose changelog recovery never applies a record over a
  stored value with a greater tag. Each changelog record carries its writer's `Tag` in the
  header `tc-tag`; the local store keeps it in front of the value. A record sent by an earlier
  owner that reaches the changelog after the current owner's (a send the broker accepted after
  the producer had given up on it) is then skipped when the partition is restored, instead of
  taking the state backwards. Records without a tag (written before this format) count as
  the oldest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import faust.stores.memory
import faust.stores.rocksdb
import rocksdict
from faust.types import TP as FaustTP
from faust.types import EventT, TableT

from streams.transaction import (
    _TAG,
    UNTAGGED,
    StaleTransaction,
    Tag,
    group_of,
    header_tag,
    owner_of,
    owners_in,
    past_owner,
)

log = logging.getLogger("streams.tables")

#: Per-patient history for the rules that span visits (compliance/state.py): a head under each
#: patient_ref and one key per visit (compliance/state_layout.py).
TABLE_NAME = "patient-history"
#: The EHR join's table: each visit's parts (streams/ehr_stages.py).
JOIN_TABLE = "ehr-visit-join"

#: A local value is MARK + packed tag + the value. No state value starts with a NUL byte (JSON,
#: or a format byte: compliance/state_layout.py), so a value without it is one written before
#: tags existed.
MARK = b"\x00"
_HEAD = len(MARK) + _TAG.size
#: When the partition's RocksDB was last written (Unix seconds), in every write batch.
WRITTEN_KEY = b"__tc\x00written__"
#: A store last written longer ago than this is wiped at assignment (Settings
#: state_max_stale_hours; this default when the app has no settings, in tests).
DEFAULT_MAX_STALE_S = 20 * 3600.0
#: The partition's highest epoch seen, kept in its RocksDB next to faust's persisted offset.
EPOCH_KEY = b"__tc\x00epoch__"


def pack(tag: Tag, value: bytes) -> bytes:
    return MARK + _TAG.pack(tag.epoch, tag.generation) + value


def after_prefix(prefix: bytes) -> bytes | None:
    """The least key above every key starting with `prefix` (None: there is none, the prefix
    is all 0xFF bytes): the prefix with its last byte below 0xFF raised by one, cut there."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def unpack(raw: bytes) -> tuple[Tag, bytes]:
    if raw[:1] == MARK and len(raw) >= _HEAD:
        epoch, generation = _TAG.unpack_from(raw, 1)
        return Tag(epoch, generation), raw[_HEAD:]
    return UNTAGGED, raw


def _newer_wins(
    batch: Iterable[EventT[Any]], stored: Callable[[int, bytes], bytes | None]
) -> tuple[
    dict[int, dict[bytes, tuple[Tag, bytes | None]]], dict[FaustTP, int], dict[int, set[bytes]]
]:
    """Changelog events -> per partition, each key's winning (tag, value): a record applies
    only when its tag is not below the value it would replace (stored, or earlier in the
    batch). Returns also the highest offset per changelog partition and the keys skipped."""
    winners: dict[int, dict[bytes, tuple[Tag, bytes | None]]] = {}
    offsets: dict[FaustTP, int] = {}
    skipped: dict[int, set[bytes]] = {}
    for event in batch:
        msg = event.message
        tp = msg.tp
        offsets[tp] = max(msg.offset, offsets.get(tp, msg.offset))
        key = bytes(msg.key or b"")
        tag = header_tag(msg.headers)
        pending = winners.setdefault(msg.partition, {})
        if key in pending:
            current = pending[key][0]
        else:
            raw = stored(msg.partition, key)
            current = unpack(raw)[0] if raw is not None else UNTAGGED
        if tag < current:
            skipped.setdefault(msg.partition, set()).add(key)
            continue
        pending[key] = (tag, None if msg.value is None else bytes(msg.value))
    return winners, offsets, skipped


def _note_skipped(store: Any, skipped: dict[int, set[bytes]]) -> None:
    """Remember the keys whose restore skipped a record, for the owner to write again
    (`TableStore.take_skipped`): the late record is the changelog's last for its key, and
    compaction keeps the last; once the newer value's record is compacted away, a restore from
    scratch would apply the late one."""
    pending: dict[int, set[bytes]] = store.__dict__.setdefault("tc_skipped", {})
    for partition, keys in skipped.items():
        pending.setdefault(partition, set()).update(keys)
    count = sum(len(k) for k in skipped.values())
    if count:
        log.warning(
            "%s: %d changelog record(s) older than the stored values skipped at recovery "
            "(an earlier owner's late writes); their keys are written again",
            store.table_name,
            count,
        )


class RocksDBStore(faust.stores.rocksdb.Store):
    """faust's RocksDB store with tag-ordered changelog recovery (`tcrocksdb://`), which wipes a
    partition's store last written too long ago before faust restores it (`persisted_offset`,
    asked by faust's recovery at every assignment: faust/tables/recovery.py `_add`)."""

    #: Injectable for tests.
    clock: Callable[[], float] = staticmethod(time.time)

    def persisted_offset(self, tp: FaustTP) -> int | None:
        db = self._db_for_partition(tp.partition)
        raw = db.get(WRITTEN_KEY)
        settings = getattr(self.app, "tc_settings", None)
        max_stale = (
            settings.state_max_stale_hours * 3600 if settings is not None else DEFAULT_MAX_STALE_S
        )
        if raw is not None and self.clock() - float(raw) > max_stale:
            # Tombstones written since may have been compacted away: what this store holds of
            # keys deleted since cannot be told from the rest. Rebuilt from the changelog.
            _wipe(db)
            log.warning(
                "%s[%d]: local store last written %.0f h ago (more than %.0f h): wiped, "
                "restoring from the changelog",
                self.table_name,
                tp.partition,
                (self.clock() - float(raw)) / 3600,
                max_stale / 3600,
            )
            return None
        offset = super().persisted_offset(tp)
        return None if offset is None else int(offset)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        def stored(partition: int, key: bytes) -> bytes | None:
            value = self._db_for_partition(partition).get(key)
            return None if value is None else bytes(value)

        winners, offsets, skipped = _newer_wins(batch, stored)
        by_partition = {tp.partition: offset for tp, offset in offsets.items()}
        for partition, offset in by_partition.items():
            db = self._db_for_partition(partition)
            _write(db, self.offset_key, winners.get(partition, {}), offset)
        _note_skipped(self, skipped)


class MemoryStore(faust.stores.memory.Store[bytes, bytes]):
    """faust's in-memory store with tag-ordered changelog recovery (`tcmemory://`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tc_epochs: dict[int, int] = {}
        #: group -> its keys (streams/transaction.py GROUP_SEP), for `prefixed` reads without a
        #: scan. Keys faust itself drops (a revoke) stay here until a read finds them gone.
        self.tc_groups: dict[bytes, set[bytes]] = {}

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        winners, _offsets, skipped = _newer_wins(batch, lambda _p, key: self.data.get(key))
        for partition, changes in winners.items():
            for key, (tag, value) in changes.items():
                _memory_put(self, partition, key, tag, value)
        _note_skipped(self, skipped)


def _memory_put(
    store: MemoryStore, partition: int, key: bytes, tag: Tag, value: bytes | None
) -> None:
    groups: dict[bytes, set[bytes]] = getattr(store, "tc_groups", {})
    group = group_of(key)
    if value is None:
        store.data.pop(key, None)
        store._key_partition.pop(key, None)
        members = groups.get(group) if group is not None else None
        if group is not None and members is not None:
            members.discard(key)
            if not members:
                del groups[group]
    else:
        store.data[key] = pack(tag, value)
        store._key_partition[key] = partition
        if group is not None:
            groups.setdefault(group, set()).add(key)
    store.tc_epochs[partition] = max(tag.epoch, store.tc_epochs.get(partition, 0))


def _write(
    db: Any,
    offset_key: bytes,
    changes: Mapping[bytes, tuple[Tag, bytes | None]],
    changelog_offset: int | None,
) -> None:
    """One RocksDB write batch: the values with their tags, the partition's highest epoch and
    faust's persisted changelog offset, so a crash leaves all of it or none."""
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    epoch = 0
    for key, (tag, value) in changes.items():
        epoch = max(epoch, tag.epoch)
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, pack(tag, value))
    if epoch and epoch > _stored_epoch(db):
        batch.put(EPOCH_KEY, str(epoch).encode())
    if changelog_offset is not None:
        batch.put(offset_key, str(changelog_offset).encode())
    batch.put(WRITTEN_KEY, repr(RocksDBStore.clock()).encode())
    db.write(batch)


def rocks_owners_after(db: Any, after: bytes | None, limit: int) -> list[bytes]:
    """`Store.owners_after` over a rocksdict database: seeks past each owner's keys, unread."""
    it = db.iter()
    it.seek(past_owner(after) if after is not None else b"")
    out: list[bytes] = []
    while it.valid() and len(out) < limit:
        key = bytes(it.key())
        owner = owner_of(key)
        if owner is None:  # a store's own key or a partition key: the next one
            it.next()
            continue
        out.append(owner)
        it.seek(past_owner(owner))  # over the owner's other keys, unread
    return out


def _wipe(db: Any) -> None:
    import rocksdict

    batch = rocksdict.WriteBatch(raw_mode=True)
    for key in db.keys():  # noqa: SIM118 (rocksdict in raw mode cannot iterate itself)
        batch.delete(key)
    db.write(batch)


def _stored_epoch(db: Any) -> int:
    raw = db.get(EPOCH_KEY)
    return int(raw) if raw is not None else 0


class TableStore:
    """A faust Table as the transaction's `Store` (streams/transaction.py)."""

    __slots__ = ("_changelog_topic", "table")

    def __init__(self, table: TableT[Any, Any]) -> None:
        self.table = table
        self._changelog_topic = table.changelog_topic.get_topic_name()

    @property
    def name(self) -> str:
        return str(self.table.name)

    @property
    def changelog_topic(self) -> str:
        return self._changelog_topic

    @property
    def _store(self) -> Any:
        # faust's Store interface reads and writes through the *current event's* partition;
        # the pipeline processes a batch at a time, so it names the partition itself.
        return self.table.data

    def _db(self, partition: int) -> Any:
        """The partition's open RocksDB; never reopens one faust dropped at a revoke."""
        db = self._store._dbs.get(partition)
        if db is None:
            raise StaleTransaction(f"{self.name}[{partition}] is not held by this worker")
        return db

    @property
    def _rocks(self) -> bool:
        return isinstance(self._store, faust.stores.rocksdb.Store)

    def get(self, partition: int, key: bytes) -> bytes | None:
        raw = self._db(partition).get(key) if self._rocks else self._store.data.get(key)
        return None if raw is None else unpack(bytes(raw))[1]

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        store = self._store
        if self._rocks:
            for key, raw in self._db(partition).items():
                if key not in (store.offset_key, EPOCH_KEY, WRITTEN_KEY):
                    yield bytes(key), unpack(bytes(raw))[1]
            return
        for key, raw in list(store.data.items()):
            if store._key_partition.get(key) == partition:
                yield bytes(key), unpack(bytes(raw))[1]

    def prefixed(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        store = self._store
        if self._rocks:
            # One call into rocksdict for the whole range, ended by RocksDB at the prefix's
            # upper bound, instead of four calls a key: half the time in bench/rocks_prefix.py
            # (in the worker RocksDB's own seek dominates: bench/RESULTS.md).
            bound = after_prefix(prefix)
            read = rocksdict.ReadOptions()
            if bound is not None:
                read.set_iterate_upper_bound(bound)
            for key, raw in self._db(partition).items(from_key=prefix, read_opt=read):
                if bound is None and not key.startswith(prefix):
                    return
                yield key, unpack(raw)[1]
            return
        groups: dict[bytes, set[bytes]] | None = getattr(store, "tc_groups", None)
        if groups is None:  # faust's own memory store: a scan
            keys = sorted(k for k in store.data if bytes(k).startswith(prefix))
        else:
            members = groups.get(prefix, set())
            keys = sorted(members)
            for gone in [k for k in keys if k not in store.data]:
                members.discard(gone)  # faust dropped it (a revoke)
            if not members:
                groups.pop(prefix, None)
        for key in keys:
            raw = store.data.get(key)
            if raw is not None and store._key_partition.get(key) == partition:
                yield bytes(key), unpack(bytes(raw))[1]

    def owners_after(self, partition: int, after: bytes | None, limit: int) -> list[bytes]:
        store = self._store
        if not self._rocks:  # the memory store (tests): a scan
            keys = [k for k, p in list(store._key_partition.items()) if p == partition]
            return sorted(owners_in((bytes(k) for k in keys if k in store.data), after))[:limit]
        return rocks_owners_after(self._db(partition), after, limit)

    def write(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        tag: Tag,
        changelog_offset: int | None,
    ) -> None:
        store = self._store
        if self._rocks:
            tagged = {key: (tag, value) for key, value in changes.items()}
            _write(self._db(partition), store.offset_key, tagged, changelog_offset)
            return
        for key, value in changes.items():
            _memory_put(store, partition, key, tag, value)

    def epoch(self, partition: int) -> int:
        if self._rocks:
            return _stored_epoch(self._db(partition))
        return int(getattr(self._store, "tc_epochs", {}).get(partition, 0))

    def take_skipped(self, partition: int) -> set[bytes]:
        """Keys whose restore skipped an earlier owner's late record since last asked."""
        pending: dict[int, set[bytes]] = getattr(self._store, "tc_skipped", {})
        return pending.pop(partition, set())

    def persisted_offset(self, partition: int) -> int | None:
        """faust's persisted changelog offset of the partition (tests)."""
        offset = self._store.persisted_offset(FaustTP(self.changelog_topic, partition))
        return None if offset is None else int(offset)

    def size(self, partitions: Sequence[int] | set[int]) -> tuple[int, int]:
        """(keys, bytes) held for these partitions: RocksDB's own estimates (live data plus
        memtables); the memory store counts exactly."""
        store = self._store
        if self._rocks:
            keys = size = 0
            for partition in partitions:
                db = store._dbs.get(partition)
                if db is None:
                    continue
                keys += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
                size += int(db.property_int_value("rocksdb.estimate-live-data-size") or 0)
                size += int(db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)
            return keys, size
        owned = [k for k, p in store._key_partition.items() if p in partitions]
        return len(owned), sum(len(store.data.get(k) or b"") for k in owned)
