"""State transactions: the only way a stage reads or changes its tables.

One `Transaction` per batch (input records, or one run of a timer) holds the batch's state
changes for every table and partition it touches. A stage reads through it - its own pending
changes first, then those of earlier transactions still in flight (the `Chain`, newest first),
then the table's local store - and writes only into it. Nothing here touches the local store or
the changelog: the pipeline (streams/pipeline.py) makes a transaction durable once its batch's
outputs are acknowledged, in the chain's order:

    outputs acknowledged -> changelog records acknowledged -> local store written (one write
    batch with the changelog offset) -> input offsets committable

so a changelog record is never durable while its batch's outputs are not, and a transaction
abandoned by a rebalance, a stop or a crash leaves no trace in the store or the changelog (its
records are re-delivered and processed again). Pure: no Kafka, no faust (the stores are adapted
in streams/tables.py).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple, Protocol


class StaleTransaction(Exception):
    """The transaction's partitions are no longer this worker's (a rebalance or a stop gave
    them up): its batch is dropped unprocessed and re-delivered to their owner."""


class Tag(NamedTuple):
    """Which owner wrote a changelog record, ordered: a record never replaces a stored value
    whose tag is greater (streams/tables.py applies this at recovery).

    `epoch` is one more than the highest epoch the partition's state had seen when its current
    owner first wrote it, so it grows with every change of owner even if the consumer group is
    recreated; `generation` (the consumer group's) breaks the tie between two owners that
    both started from the same state."""

    epoch: int
    generation: int


#: Header of every changelog record the pipeline writes: its `Tag`, two big-endian u64.
TAG_HEADER = "tc-tag"
_TAG = struct.Struct(">QQ")
#: The tag of records written before tags existed: older than any other.
UNTAGGED = Tag(0, 0)


def tag_headers(tag: Tag) -> list[tuple[str, bytes]]:
    return [(TAG_HEADER, _TAG.pack(tag.epoch, tag.generation))]


def header_tag(headers: object) -> Tag:
    """A record's tag (UNTAGGED when it has none); headers as a list of pairs or a mapping."""
    if not headers:
        return UNTAGGED
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:  # type: ignore[attr-defined]
        if name == TAG_HEADER and isinstance(value, bytes | bytearray) and len(value) == 16:
            epoch, generation = _TAG.unpack(bytes(value))
            return Tag(epoch, generation)
    return UNTAGGED


class Store(Protocol):
    """One table's local state by partition (streams/tables.py adapts faust's stores)."""

    @property
    def name(self) -> str: ...

    @property
    def changelog_topic(self) -> str: ...

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The stored value; raises StaleTransaction for a partition this worker does not
        hold."""
        ...

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]: ...

    def prefixed(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The keys starting with `prefix` (a group: it ends with GROUP_SEP) and their values,
        without a scan of the partition."""
        ...

    def owners_after(self, partition: int, after: bytes | None, limit: int) -> list[bytes]:
        """Up to `limit` owners after `after` (None: from the first), in key order, without
        reading every key: an owner is a key's part before GROUP_SEP (a patient: its head
        and its visits' keys). Keys that are no owner's (a control byte before GROUP_SEP: the
        partition keys, the stores' own) are left out."""
        ...

    def write(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        tag: Tag,
        changelog_offset: int | None,
    ) -> None:
        """Apply changes (None: delete) and the changelog offset that holds them, at once."""
        ...

    def epoch(self, partition: int) -> int:
        """The highest `Tag.epoch` the partition's state has seen (0: none)."""
        ...


#: Keys may be grouped: a key's group is its part up to and including its first GROUP_SEP (a
#: patient's visits: compliance/state_layout.py). `Transaction.prefixed` reads a group.
GROUP_SEP = b"\x1f"


def group_of(key: bytes) -> bytes | None:
    i = key.find(GROUP_SEP)
    return None if i < 0 else key[: i + 1]


def owner_of(key: bytes) -> bytes | None:
    """The owner of a key (Store.owners_after): its part before GROUP_SEP, when printable."""
    i = key.find(GROUP_SEP)
    owner = key if i < 0 else key[:i]
    if not owner or min(owner) < 0x20:
        return None
    return owner


def past_owner(owner: bytes) -> bytes:
    """The first key after every key of `owner` (its own and owner + GROUP_SEP + ...): owners
    are printable (>= 0x20) and GROUP_SEP is 0x1F, so no other owner's key lies between."""
    return owner + b"\x20"


def owners_in(keys: Iterable[bytes], after: bytes | None) -> set[bytes]:
    out = set()
    for key in keys:
        owner = owner_of(key)
        if owner is not None and (after is None or owner > after):
            out.add(owner)
    return out


#: A key's value in a transaction: bytes, or None for a deleted key.
Value = bytes | None
_MISSING = object()


class Transaction:
    """The state changes of one batch. Reads see, in order: this transaction's changes, those
    of earlier transactions of the chain still in flight, the store."""

    __slots__ = ("_chain", "_groups", "_undo", "changes", "seq")

    def __init__(self, chain: Chain, seq: int) -> None:
        self._chain = chain
        self.seq = seq
        #: (store, partition) -> key -> value (None: deleted), in the order first written.
        self.changes: dict[tuple[Store, int], dict[bytes, Value]] = {}
        self._undo: list[tuple[dict[bytes, Value], bytes, object]] = []
        #: (store, partition) -> group -> keys of it written (a rollback can leave keys here
        #: that `changes` no longer holds: readers check `changes`).
        self._groups: dict[tuple[Store, int], dict[bytes, set[bytes]]] = {}

    def get(self, store: Store, partition: int, key: bytes) -> bytes | None:
        found = self._chain.pending(self, store, partition, key)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        return store.get(partition, key)

    def put(self, store: Store, partition: int, key: bytes, value: Value) -> None:
        """Set (None: delete) a key; durable only with the transaction."""
        changes = self.changes.setdefault((store, partition), {})
        self._undo.append((changes, key, changes.get(key, _MISSING)))
        changes[key] = value
        group = group_of(key)
        if group is not None:
            self._groups.setdefault((store, partition), {}).setdefault(group, set()).add(key)

    def prefixed(self, store: Store, partition: int, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """The keys of a group (`prefix` ends with GROUP_SEP) as this transaction sees them,
        sorted by key."""
        where = (store, partition)
        overlay: dict[bytes, Value] = {}
        for txn in self._chain.up_to(self):
            keys = txn._groups.get(where, {}).get(prefix)
            if keys:
                changes = txn.changes.get(where, {})
                for key in keys:
                    if key in changes:
                        overlay[key] = changes[key]
        if not overlay:
            return list(store.prefixed(partition, prefix))
        out = [(k, v) for k, v in store.prefixed(partition, prefix) if k not in overlay]
        out.extend((k, v) for k, v in overlay.items() if v is not None)
        out.sort()
        return out

    def items(self, store: Store, partition: int) -> list[tuple[bytes, bytes]]:
        """Every key and value of the partition as this transaction sees it (a snapshot)."""
        overlay: dict[bytes, Value] = {}
        for txn in self._chain.up_to(self):
            overlay.update(txn.changes.get((store, partition), {}))
        out = [(k, v) for k, v in store.items(partition) if k not in overlay]
        out.extend((k, v) for k, v in overlay.items() if v is not None)
        return out

    def owners_after(
        self, store: Store, partition: int, after: bytes | None, limit: int
    ) -> list[bytes]:
        """`Store.owners_after` as this transaction sees it: with the owners that transactions
        still in flight wrote (an owner all of whose keys they deleted may be listed: its read
        is then empty)."""
        stored = store.owners_after(partition, after, limit)
        pending: set[bytes] = set()
        for txn in self._chain.up_to(self):
            pending |= owners_in(txn.changes.get((store, partition), {}), after)
        if len(stored) >= limit:  # more are stored past the last: take pending up to it only
            pending = {o for o in pending if o <= stored[-1]}
        return sorted(set(stored) | pending)[:limit]

    def mark(self) -> int:
        """A savepoint: `rollback(mark)` undoes every change made after it."""
        return len(self._undo)

    def rollback(self, mark: int) -> None:
        while len(self._undo) > mark:
            changes, key, previous = self._undo.pop()
            if previous is _MISSING:
                del changes[key]
            else:
                changes[key] = previous  # type: ignore[assignment]
        for where in [w for w, c in self.changes.items() if not c]:
            del self.changes[where]

    def partitions(self) -> set[tuple[Store, int]]:
        return {where for where, changes in self.changes.items() if changes}

    def __bool__(self) -> bool:
        return any(self.changes.values())


class Chain:
    """The transactions of one pipeline that are begun and not yet in the stores, in the order
    they were begun (which is the order their batches were taken, and become durable in)."""

    __slots__ = ("_seq", "_txns")

    def __init__(self) -> None:
        self._txns: list[Transaction] = []
        self._seq = 0

    def begin(self) -> Transaction:
        self._seq += 1
        txn = Transaction(self, self._seq)
        self._txns.append(txn)
        return txn

    def done(self, txn: Transaction) -> None:
        """The transaction is in the stores, or abandoned: later reads go past it."""
        if txn in self._txns:
            self._txns.remove(txn)

    def clear(self) -> list[Transaction]:
        """Abandon every transaction in flight (a rebalance gave their partitions up)."""
        gone, self._txns = self._txns, []
        return gone

    def up_to(self, txn: Transaction) -> list[Transaction]:
        """The transactions from the oldest in flight through `txn`, oldest first."""
        if txn not in self._txns:
            return [txn]
        return self._txns[: self._txns.index(txn) + 1]

    def pending(self, txn: Transaction, store: Store, partition: int, key: bytes) -> object:
        """The newest value of `key` in `txn` or an earlier transaction in flight, else
        _MISSING."""
        for t in reversed(self.up_to(txn)):
            changes = t.changes.get((store, partition))
            if changes is not None and key in changes:
                return changes[key]
        return _MISSING

    def __len__(self) -> int:
        return len(self._txns)

    def __iter__(self) -> Iterator[Transaction]:
        return iter(list(self._txns))


class DictStore:
    """A `Store` in a dict: for tools, benchmarks and tests that need a table without faust."""

    def __init__(self, name: str = "table", changelog_topic: str = "table-changelog") -> None:
        self._name = name
        self._changelog_topic = changelog_topic
        self.data: dict[int, dict[bytes, bytes]] = {}
        self.tags: dict[int, dict[bytes, Tag]] = {}
        self.offsets: dict[int, int] = {}
        self.epochs: dict[int, int] = {}
        self.writes = 0
        # Each partition's keys in order, so that a prefix read seeks (as RocksDB does)
        # instead of scanning the partition.
        self._sorted: dict[int, list[bytes]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def changelog_topic(self) -> str:
        return self._changelog_topic

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self.data.get(partition, {}).items())

    def prefixed(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        data, keys = self.data.get(partition, {}), self._sorted.get(partition, [])
        if len(keys) != len(data):  # `data` changed without `write` (a test, a tool): re-sort
            keys = self._sorted[partition] = sorted(data)
        found = []
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            if not keys[i].startswith(prefix):
                break
            found.append((keys[i], data[keys[i]]))
        yield from found

    def owners_after(self, partition: int, after: bytes | None, limit: int) -> list[bytes]:
        return sorted(owners_in(self.data.get(partition, {}), after))[:limit]

    def write(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        tag: Tag,
        changelog_offset: int | None,
    ) -> None:
        self.writes += 1
        data = self.data.setdefault(partition, {})
        tags = self.tags.setdefault(partition, {})
        keys = self._sorted.setdefault(partition, [])
        for key, value in changes.items():
            if value is None:
                if data.pop(key, None) is not None:
                    del keys[bisect.bisect_left(keys, key)]
                tags.pop(key, None)
            else:
                if key not in data:
                    bisect.insort(keys, key)
                data[key] = value
                tags[key] = tag
        if changes:
            self.epochs[partition] = max(tag.epoch, self.epochs.get(partition, 0))
        if changelog_offset is not None:
            self.offsets[partition] = changelog_offset

    def epoch(self, partition: int) -> int:
        return self.epochs.get(partition, 0)


#: The tag of state written without a pipeline (tools and tests).
LOCAL = Tag(1, 0)


def commit_now(txn: Transaction, tag: Tag = LOCAL) -> None:
    """Write a transaction straight into its stores, with no changelog (tools and tests that
    run stages without a pipeline)."""
    for (store, partition), changes in txn.changes.items():
        store.write(partition, changes, tag, None)
    txn._chain.done(txn)
