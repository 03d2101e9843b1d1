"""`therapy-compliance demo-feed`: synthetic visits into the input topic (cli/demo_feed.py)."""

from __future__ import annotations

import argparse

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
        "(evaluation, plan, certification, treatment, progress reports, discharge, KX)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.demo_feed import demo_feed

    return run_with_kafka(
        lambda s: demo_feed(s, args.rate, args.count, args.seed, args.malformed, args.mode)
    )
