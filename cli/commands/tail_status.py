"""`therapy-compliance tail-status`: the visit status topic, readable (cli/tail_status.py)."""

from __future__ import annotations

import argparse

from cli.commands._kafka import run_with_kafka


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tail-status",
        help="print visits' billing statuses (hold, review, ready) as they change",
        description=(
            "Print the visit status topic (TC_TOPIC_STATUS), one line per new status of a "
            "visit: a record whose version is not above the visit's highest one seen is a "
            "repeat and is not printed. Bad records are reported on standard error and skipped."
        ),
    )
    p.add_argument("--visit", metavar="ID", default=None, help="only this visit_id")
    p.add_argument("--hold", action="store_true", help="only records whose status is hold")
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest record (the topic is compacted: every visit's current "
        "status, and possibly some earlier ones); without it, only changes from now on",
    )
    p.add_argument("--json", action="store_true", help="print the raw VisitStatus JSON")
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="stop after N records printed"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.tail_status import StatusTail, tail_status

    tail = StatusTail(visit=args.visit, hold_only=args.hold, as_json=args.json)
    return run_with_kafka(lambda s: tail_status(s, tail, args.from_beginning, args.limit))
