"""`therapy-compliance demo-feed`: synthetic visits into the input topic; with
`--holds-released`, the visits the status topic shows released from hold (cli/demo_feed.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.commands._kafka import run_with_kafka


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo-feed", help="produce realistic synthetic visits to the input topic")
    p.add_argument(
        "--rate", type=float, default=50.0, help="visits per second, 0 = max (default 50)"
    )
    p.add_argument("--count", type=int, default=1000, help="visits to send (default 1000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--malformed", type=float, default=0.02, help="share of malformed records (default 0.02)"
    )
    p.add_argument(
        "--mode",
        choices=["visits", "episodes"],
        default="visits",
        help="independent visits with one flaw each, or patients' episodes of care "
        "(evaluation, plan, certification, treatment, progress reports, discharge, KX; "
        "corrected visits and delayed certifications that release holds)",
    )
    p.add_argument(
        "--releases-out",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the feed's patients and the holds it means to release (JSON), "
        "for --holds-released --releases PATH",
    )
    p.add_argument(
        "--holds-released",
        action="store_true",
        help="send nothing: read the visit status topic from its beginning and print the "
        "visits released from hold (status hold at some version, now ready or review)",
    )
    p.add_argument(
        "--releases",
        type=Path,
        default=None,
        metavar="PATH",
        help="with --holds-released: only the visits of the feed whose --releases-out file "
        "this is, against the holds it meant to release",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.demo_feed import demo_feed, holds_released

    if args.releases is not None and not args.holds_released:
        print(
            "therapy-compliance demo-feed: --releases goes with --holds-released", file=sys.stderr
        )
        return 2
    if args.holds_released:
        feed = None
        if args.releases is not None:
            try:
                feed = args.releases.read_bytes()
            except OSError as exc:
                print(f"therapy-compliance demo-feed: {exc}", file=sys.stderr)
                return 2
        return run_with_kafka(lambda s: holds_released(s, feed))
    return run_with_kafka(
        lambda s: demo_feed(
            s,
            args.rate,
            args.count,
            args.seed,
            args.malformed,
            args.mode,
            releases_out=args.releases_out,
        )
    )
