"""Duplicate-key detection options, per valid record (not a test; bench/RESULTS.md "Input
hygiene"):

    taskset -c 1 .venv/bin/python bench/duplicate_keys.py [--visits N] [--repeat R]

On the synthetic feed's valid records (synthetic/visits.py, seed 42) it prints microseconds
per record for: the decoder's validation alone (pydantic `model_validate_json`); a full second
parse that sees duplicates (Python's json with `object_pairs_hook`); the shipped check
(schemas/duplicate_keys.py: quote counts against orjson's re-encoding); and `decode_visit` as
shipped (validation + duplicate check + patient_ref pattern). R rounds, options in turn; the
best and the median per option.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.decode import decode_visit
from schemas.duplicate_keys import duplicate_key_detail
from schemas.visit import TherapyVisitCompleted
from synthetic.visits import generator


def _pairs_hook(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) != len(dict(pairs)):
        raise ValueError("duplicate key")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    records = [
        r.value for r in generator("visits", seed=42, malformed_share=0).records(args.visits)
    ]
    options = {
        "validation alone (model_validate_json)": TherapyVisitCompleted.model_validate_json,
        "full second parse (json.loads, object_pairs_hook)": lambda r: json.loads(
            r, object_pairs_hook=_pairs_hook
        ),
        "shipped duplicate check (quote counts vs orjson)": duplicate_key_detail,
        "decode_visit as shipped (all of the above that runs)": decode_visit,
    }
    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; {len(records)} valid records, "
        f"mean {sum(map(len, records)) / len(records):.0f} bytes, best of {args.repeat}"
    )
    # Round robin: a neighbour's load spike hits every option alike; best of R, and the median.
    times: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(args.repeat):
        for name, fn in options.items():
            times[name] += timeit.repeat(lambda fn=fn: [fn(r) for r in records], number=1, repeat=1)
    for name, ts in times.items():
        best, med = min(ts) / len(records) * 1e6, statistics.median(ts) / len(records) * 1e6
        print(f"{best:6.2f} us/record best, {med:6.2f} median  {name}")


if __name__ == "__main__":
    main()
