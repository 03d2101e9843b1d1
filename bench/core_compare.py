"""Same-run before/after of the core benchmark (not a test): bench/core_bench.py in scratch
checkouts of git revisions, run alternately on one core so the machine's load hits all alike.

    .venv/bin/python bench/core_compare.py [--rev 555fa0d --rev HEAD] [--mypyc HEAD]
        [--rounds 3] [--cpu 1] [-- core_bench arguments ...]

Each revision is `git archive`d into a temporary directory and given this checkout's
bench/core_bench.py (so every variant runs the same benchmark); `--mypyc REV` adds a copy of REV
with every compliance/ module that does not use pydantic compiled by mypyc (`mypyc --strict`,
in place: the .so files shadow the .py files). Prints each run's raw output and, per
variant, the median of the rounds' medians and its ratio to the first variant, by wall time and
by CPU time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(rev: str, into: Path) -> Path:
    """REV's tree with this checkout's bench/core_bench.py: one benchmark for every variant."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copy(ROOT / "bench" / "core_bench.py", into / "bench" / "core_bench.py")
    return into


def compile_mypyc(tree: Path) -> None:
    modules = sorted(
        str(p.relative_to(tree))
        for p in (tree / "compliance").rglob("*.py")
        if p.name != "__init__.py" and "pydantic" not in p.read_text()
    )
    mypyc = Path(sys.executable).parent / "mypyc"
    subprocess.run([str(mypyc), "--strict", *modules], cwd=tree, check=True, capture_output=True)
    print(f"mypyc: {len(modules)} modules compiled in {tree}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", action="append", default=None)
    ap.add_argument("--mypyc", default=None, metavar="REV")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", default="1")
    ap.add_argument("bench_args", nargs="*")
    args = ap.parse_args()
    revs = args.rev or ["555fa0d", "HEAD"]
    bench_args = args.bench_args or ["--visits", "100000", "--repeat", "3"]
    with tempfile.TemporaryDirectory(prefix="tc-core-compare-") as tmp:
        variants = [(rev, checkout(rev, Path(tmp) / f"v{i}")) for i, rev in enumerate(revs)]
        if args.mypyc:
            tree = checkout(args.mypyc, Path(tmp) / "mypyc")
            compile_mypyc(tree)
            variants.append((f"{args.mypyc} + mypyc", tree))
        medians: dict[str, list[float]] = {name: [] for name, _ in variants}
        cpu_medians: dict[str, list[float]] = {name: [] for name, _ in variants}
        for r in range(args.rounds):
            for name, tree in variants:
                proc = subprocess.run(
                    ["taskset", "-c", args.cpu, sys.executable, "bench/core_bench.py", *bench_args],
                    cwd=tree,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                print(f"[round {r + 1}: {name}]\n{proc.stdout.strip()}", flush=True)
                found = re.search(r"median: ([\d,]+) visits/s", proc.stdout)
                assert found is not None
                medians[name].append(float(found.group(1).replace(",", "")))
                found = re.search(r"cpu median: ([\d,]+) visits/s", proc.stdout)
                assert found is not None
                cpu_medians[name].append(float(found.group(1).replace(",", "")))
        for label, table in (("wall time", medians), ("CPU time", cpu_medians)):
            first = statistics.median(table[variants[0][0]])
            print(f"summary, {label} (median of the rounds' medians):")
            for name, values in table.items():
                med = statistics.median(values)
                runs = " / ".join(f"{v:,.0f}" for v in values)
                print(f"  {name:24s} {med:8,.0f} visits/s  {med / first:.2f}x  ({runs})")


if __name__ == "__main__":
    main()
