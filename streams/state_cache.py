"""Decoded table values kept in memory, so a patient seen again costs no decode.

A memo of the table's decode function, bounded in bytes and least recently used first out.
An entry holds the bytes read (a patient's head and visit keys and values:
compliance/state_layout.py) next to the object decoded from them, and is used only when the
bytes read now (through the transaction: its own changes, those in flight, the store) are the
same bytes: identical objects, or equal. So the cache can never answer something the store
or the transaction does not hold - a rollback, a revoke, a restore from the changelog, another
owner's writes all change the bytes read and miss - and nothing has to invalidate it for
correctness. Dropping a revoked partition's entries only gives their memory back.

The decoded objects must not be changed once built (compliance/records.py: records are never
mutated; PatientHistory is frozen). Pure: no Kafka, no faust.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Memory of a cached patient history per byte of its serialised form: the decoded records plus
#: their JSON objects kept for the next encode (measured with tracemalloc on the synthetic
#: feeds: 12.7-14.7x), plus the serialised bytes the entry holds (1x). bench/RESULTS.md,
#: "2026-12-07: decoded state in memory".
DECODED_BYTES_PER_BYTE = 16
#: Per entry: the key, the OrderedDict node, the entry tuple.
ENTRY_OVERHEAD = 200


class DecodedCache(Generic[T]):
    """`get(partition, key, raw, size, decode)` = (`decode()`, whether it was in memory),
    remembered for the next read of the same `raw` (the stored bytes, compared by equality);
    at most `budget_bytes` of estimated memory (`weight` per byte of `size`, the bytes of raw)."""

    __slots__ = ("_entries", "budget", "evictions", "hits", "misses", "size", "weight")

    def __init__(self, budget_bytes: int, weight: int = DECODED_BYTES_PER_BYTE) -> None:
        self.budget = budget_bytes
        self.weight = weight
        self._entries: OrderedDict[tuple[int, bytes], tuple[object, T, int]] = OrderedDict()
        self.size = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, partition: int, key: bytes, raw: object, size: int, decode: Callable[[], T]
    ) -> tuple[T, bool]:
        where = (partition, key)
        entry = self._entries.get(where)
        if entry is not None and (entry[0] is raw or entry[0] == raw):
            self._entries.move_to_end(where)
            self.hits += 1
            return entry[1], True
        self.misses += 1
        value = decode()
        self.put(partition, key, raw, size, value)
        return value, False

    def put(self, partition: int, key: bytes, raw: object, size: int, value: T) -> None:
        """Remember `value` as the decoded form of `raw` (`size` bytes)."""
        where = (partition, key)
        cost = size * self.weight + ENTRY_OVERHEAD
        old = self._entries.pop(where, None)
        if old is not None:
            self.size -= old[2]
        if cost > self.budget:
            return
        self._entries[where] = (raw, value, cost)
        self.size += cost
        while self.size > self.budget:
            _, (_, _, gone) = self._entries.popitem(last=False)
            self.size -= gone
            self.evictions += 1

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the entries of these partitions (given up: their memory back)."""
        gone = set(partitions)
        for where in [w for w in self._entries if w[0] in gone]:
            self.size -= self._entries.pop(where)[2]
