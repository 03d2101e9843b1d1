"""Reading a patient's keys from RocksDB by prefix, two ways (streams/tables.py `prefixed`): an
iterator driven from Python (seek, then valid/key/value/next per key) and one rocksdict `items`
call ended by an iterate upper bound. Prints microseconds a patient.

    .venv/bin/python bench/rocks_prefix.py [--patients 5000] [--visits 20]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable

import rocksdict

from streams.tables import after_prefix


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--visits", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(7)
    db = rocksdict.Rdict(tempfile.mkdtemp(), rocksdict.Options(raw_mode=True))
    batch = rocksdict.WriteBatch(raw_mode=True)
    patients = [b"P-%06d" % i for i in range(args.patients)]
    for p in patients:
        for _ in range(args.visits):
            batch.put(p + b"\x1f" + b"V-%08d" % rng.randrange(10**8), os.urandom(220))
    db.write(batch)
    db.flush()

    def stepped(prefix: bytes) -> list[tuple[bytes, bytes]]:
        it = db.iter()
        it.seek(prefix)
        out = []
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(prefix):
                break
            out.append((key, bytes(it.value())))
            it.next()
        return out

    def bounded(prefix: bytes) -> list[tuple[bytes, bytes]]:
        read = rocksdict.ReadOptions()
        bound = after_prefix(prefix)
        assert bound is not None
        read.set_iterate_upper_bound(bound)
        return list(db.items(from_key=prefix, read_opt=read))

    assert stepped(patients[0] + b"\x1f") == bounded(patients[0] + b"\x1f")
    ways: list[tuple[str, Callable[[bytes], list[tuple[bytes, bytes]]]]] = [
        ("stepped", stepped),
        ("bounded", bounded),
    ]
    for _ in range(2):
        for name, read in ways:
            sample = rng.sample(patients, min(3000, len(patients)))
            t = time.perf_counter()
            n = sum(len(read(p + b"\x1f")) for p in sample)
            us = (time.perf_counter() - t) / len(sample) * 1e6
            print(f"{name}: {us:.1f} us a patient ({n / len(sample):.0f} keys)")
    db.close()


if __name__ == "__main__":
    main()
