"""Per-patient state in a Faust table, read and written per input partition.

The table (`patient-history`, key `patient_ref`) is a faust Table: faust declares its changelog
topic (compacted, one partition per input partition), keeps each partition in a local RocksDB
store (rocksdict), restores partitions from the changelog when they are assigned (reading only
what is newer than the store's persisted offset) and moves them on a rebalance.

Writes do not go through `table[key] = value`: faust sends that changelog record through a
fire-and-forget buffer, and its flush before a commit returns without waiting for it
(faust/transport/producer.py 75-93), so the state could be committed ahead of its changelog.
Instead `put` writes the local store and returns the changelog record as an `Output` of the
batch: the pipeline publishes it with the alerts and commits the input offset only once it is
acknowledged too. A re-sent changelog record always carries the key's latest value, and the
store's persisted offset advances once the broker has it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust.types import TP as FaustTP
from faust.types import TableT

from streams.processor import Output

TABLE_NAME = "patient-history"
#: The EHR join's table: each visit's parts (streams/ehr_stages.py).
JOIN_TABLE = "ehr-visit-join"


class TableState:
    __slots__ = ("changelog_topic", "table")

    def __init__(self, table: TableT[Any, Any]) -> None:
        self.table = table
        self.changelog_topic = table.changelog_topic.get_topic_name()

    @property
    def _store(self) -> Any:
        # faust's Store interface reads and writes through the *current event's* partition;
        # the pipeline processes a batch at a time, so it names the partition itself.
        return self.table.data

    def get(self, partition: int, key: bytes) -> bytes | None:
        store = self._store
        if hasattr(store, "_db_for_partition"):  # rocksdb://
            value = store._db_for_partition(partition).get(key)
            return None if value is None else bytes(value)
        value = store.data.get(key)  # memory:// (tests)
        return None if value is None else bytes(value)

    def put(self, partition: int, key: bytes, value: bytes | None) -> Output:
        """Write (None: delete) the key in the partition's store; returns the changelog record
        (a tombstone for a delete) for the pipeline to publish with the batch."""
        store = self._store
        if hasattr(store, "_db_for_partition"):
            db = store._db_for_partition(partition)
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
        elif value is None:
            store.data.pop(key, None)
            store._key_partition.pop(key, None)
        else:
            store.data[key] = value
            store._key_partition[key] = partition
        return self._output(partition, key, value)

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value of the partition's store (the join's expiry scan)."""
        store = self._store
        if hasattr(store, "_db_for_partition"):
            db = store._db_for_partition(partition)
            for key, value in db.items():
                if key != store.offset_key:  # faust keeps its persisted offset in the same db
                    yield bytes(key), bytes(value)
            return
        for key, value in list(store.data.items()):
            if store._key_partition.get(key) == partition:
                yield bytes(key), bytes(value)

    def size(self, partitions: set[int]) -> tuple[int, int]:
        """(keys, bytes) held for these partitions: RocksDB's own estimates (live data plus
        memtables); the memory store counts exactly."""
        store = self._store
        if hasattr(store, "_db_for_partition"):
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

    def _output(self, partition: int, key: bytes, value: bytes | None) -> Output:
        def latest() -> Output:
            # The key's latest value; deleted meanwhile: a tombstone.
            return self._output(partition, key, self.get(partition, key))

        def acked(metadata: Any) -> None:
            offset = getattr(metadata, "offset", None)  # aiokafka's RecordMetadata
            if offset is not None:
                self._store.set_persisted_offset(FaustTP(self.changelog_topic, partition), offset)

        return Output(self.changelog_topic, key, value, partition, latest, acked)
