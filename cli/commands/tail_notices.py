"""`therapy-compliance tail-notices`: what falls due before a rule is broken, readable
(cli/tail_notices.py)."""

from __future__ import annotations

import argparse
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from cli.commands._kafka import run_with_kafka
from runtime.settings import Settings


def _kind(value: str) -> str:
    """Checks a `--kind` value at parse time (the error names the known kinds); kept as given,
    joined into a set in `run`."""
    from cli.tail_notices import parse_kinds

    try:
        parse_kinds([value])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if days < 0:
        raise argparse.ArgumentTypeError(f"a number of days is 0 or more, not {days}")
    return days


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tail-notices",
        help="print notices of what falls due (certifications, progress reports, KX) before "
        "a rule is broken",
        description=(
            "Print the notice topic (TC_TOPIC_NOTICES), one line per notice: as of, kind, "
            "patient, episode, when it is due, what to do. A notice re-sent with the same "
            "notice_id is printed once. Bad records are reported on standard error and skipped."
        ),
    )
    p.add_argument("--patient", metavar="REF", default=None, help="only this patient_ref")
    p.add_argument(
        "--kind",
        metavar="KIND",
        action="append",
        type=_kind,
        default=[],
        help="only notices of this kind (repeatable, or a comma list): PROGRESS_REPORT_DUE, "
        "CERTIFICATION_DUE, VERBAL_ORDER_SIGNATURE_DUE, RECERTIFICATION_DUE, KX_THRESHOLD_NEAR",
    )
    p.add_argument(
        "--due-within",
        metavar="DAYS",
        type=_days,
        default=None,
        help="only notices due from today (the clinic's date: the TC_EHR_PROFILE time zone, "
        "else UTC) through today + DAYS; for a kind without a due date (progress reports, KX), "
        "those dated (as_of) within DAYS of today",
    )
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest notice the topic keeps; without it, only notices from now on",
    )
    p.add_argument("--json", action="store_true", help="print the raw ComplianceNotice JSON")
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="stop after N notices printed"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.tail_notices import NoticeTail, parse_kinds, tail_notices

    kinds = parse_kinds(args.kind)

    def work(settings: Settings) -> Coroutine[Any, Any, int]:
        tail = NoticeTail(
            patient=args.patient,
            kinds=kinds,
            due_within=args.due_within,
            today=datetime.now(settings.clinic_zone).date(),
            as_json=args.json,
        )
        return tail_notices(settings, tail, args.from_beginning, args.limit)

    return run_with_kafka(work)
