"""`therapy-compliance replay-deadletter`: dead letters back to the input topic after a fix
(cli/replay.py)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from cli.commands._kafka import run_with_kafka
from schemas.common import DeadLetterReason


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay-deadletter", help="re-publish dead letters to the input topic after a fix"
    )
    p.add_argument(
        "--reason",
        choices=[r.value for r in DeadLetterReason],
        help="only dead letters with this reason",
    )
    p.add_argument(
        "--since",
        type=_timestamp,
        metavar="T",
        help="only dead letters rejected at or after T (ISO 8601, e.g. "
        "2026-03-02T15:00:00Z or 2026-03-02)",
    )
    p.add_argument(
        "--rekey",
        action="store_true",
        help="use the visit's patient_ref as the key (for key rejections)",
    )
    p.add_argument("--dry-run", action="store_true", help="count, send nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.replay import replay_deadletters

    reason = DeadLetterReason(args.reason) if args.reason else None
    return run_with_kafka(
        lambda s: replay_deadletters(s, reason, args.since, args.rekey, args.dry_run)
    )


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
