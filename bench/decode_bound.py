"""How much lazily decoding other days' lines could save (benchmark, not a test; issue 19 item 3:
"decodes other days' lines only when a rule needs them").

    .venv/bin/python bench/decode_bound.py [--visits 10000] [--feed live|visits|episodes]

Runs bench/processor_bench.py's feed through the check stage's processor (memory store) and
keeps every visit value (format 3, compliance/state_layout.py) the processor decodes. Then
times, on those values, msgspec's decode into the records as the worker does it, and a decode
that leaves every visit's billed and unbilled lines undecoded (msgspec.Raw: the least a lazy
decoder could do, before any Python-level bookkeeping to decode them on demand). The
difference is an upper bound of what lazy decoding could save a record. Prints per feed:
values decoded a record, both decode times per record (best of 3 passes), mean value size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import processor_bench

from compliance import Engine, state_layout
from compliance.records import VisitRecord
from runtime.settings import Settings


def _lines_raw() -> type[msgspec.Struct]:
    """compliance.records.VisitRecord field by field (derived: it follows fields appended),
    its billed and unbilled lines left encoded."""
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(VisitRecord):
        if f.name in ("lines", "unbilled"):
            spec.append((f.name, msgspec.Raw, msgspec.Raw(b"")))
        elif f.default is msgspec.NODEFAULT:
            spec.append((f.name, f.type))
        else:
            spec.append((f.name, f.type, f.default))
    return msgspec.defstruct("_LinesRaw", spec, array_like=True, gc=False)


_FULL = msgspec.msgpack.Decoder(tuple[state_layout.VisitRecord, ...])
_LAZY = msgspec.msgpack.Decoder(tuple[_lines_raw(), ...])


def _best(values: list[bytes], decode: Callable[[bytes], object]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for v in values:
            decode(v[1:])  # after the format byte
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=10_000)
    ap.add_argument("--feed", choices=("live", "visits", "episodes"), action="append")
    args = ap.parse_args()
    decode = state_layout.decode_visit
    for feed in args.feed or ["visits", "live", "episodes"]:
        records = processor_bench.feed(feed, args.visits)
        seen: list[bytes] = []

        def spy(raw: bytes, keep: list[bytes] = seen) -> tuple[state_layout.VisitRecord, ...]:
            keep.append(raw)
            return decode(raw)

        state_layout.decode_visit = spy  # type: ignore[assignment]
        try:
            processor_bench.run(records, 200, Settings.from_env({}), Engine())
        finally:
            state_layout.decode_visit = decode  # type: ignore[assignment]
        n = len(records)
        full = _best(seen, _FULL.decode) / n * 1e6
        lazy = _best(seen, _LAZY.decode) / n * 1e6
        print(
            f"{feed}: {n:,} records, {len(seen) / n:.1f} visit values decoded a record "
            f"(mean {statistics.mean(map(len, seen)):.0f} bytes); decode {full:.2f} us a record, "
            f"lines left undecoded {lazy:.2f} us: at most {full - lazy:.2f} us a record to save"
        )


if __name__ == "__main__":
    main()
