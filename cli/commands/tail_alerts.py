"""`therapy-compliance tail-alerts`: compliance alerts as they arrive, readable (cli/tail_alerts.py)."""

from __future__ import annotations

import argparse

from cli.commands._kafka import run_with_kafka


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tail-alerts", help="print compliance alerts as they arrive")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest alert")
    p.add_argument("--json", action="store_true", help="print the raw ComplianceAlert JSON")
    p.add_argument("--limit", type=int, default=None, help="stop after N alerts")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.tail_alerts import tail_alerts

    return run_with_kafka(lambda s: tail_alerts(s, args.from_beginning, args.json, args.limit))
