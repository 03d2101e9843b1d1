"""`therapy-compliance compare-rulesets OLD NEW HISTORY`: a rule-data update as a dry run."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare-rulesets",
        help="dry run of a rule-data update: alerts it would add and remove over a history",
    )
    p.add_argument("old_dir", metavar="OLD_DIR", help="the rule set in use")
    p.add_argument("new_dir", metavar="NEW_DIR", help="the updated rule set")
    p.add_argument("history", metavar="HISTORY.jsonl", help="visits, as for audit")
    p.add_argument("--json", action="store_true", help="one JSON object, not a table")
    p.add_argument(
        "--patient-ref-pattern",
        metavar="REGEX",
        default=None,
        help="accepted alphabet of patient_ref, as for audit (default: the worker's "
        "TC_PATIENT_REF_PATTERN, else printable ASCII without spaces)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.compare import compare_main

    return compare_main(
        args.old_dir, args.new_dir, args.history, args.json, args.patient_ref_pattern
    )
