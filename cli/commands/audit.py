"""`therapy-compliance audit [PATH|-]`: the worker's checks over JSON Lines (cli/audit.py)."""

from __future__ import annotations

import argparse
from datetime import date

from compliance.state import DEFAULT_HORIZON_DAYS
from schemas.decode import DEFAULT_MAX_BYTES


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="check TherapyVisitCompleted v1 JSON Lines; alerts to stdout")
    p.add_argument("path", nargs="?", default="-", help="JSON Lines file, or - for stdin")
    p.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="largest accepted line in bytes (default %(default)s)",
    )
    p.add_argument(
        "--ruleset",
        metavar="DIR",
        default=None,
        help="rule data directory, in place of TC_RULESET_DIR (default: TC_RULESET_DIR, else the "
        "rules shipped with the package); TC_NCCI_PTP_FILES, TC_NCCI_MUE_FILES and TC_FEE_FILES "
        "add files, as in the worker",
    )
    p.add_argument(
        "--horizon-days",
        type=int,
        default=DEFAULT_HORIZON_DAYS,
        help="same-day details kept per patient, in days (the worker's "
        "TC_HISTORY_HORIZON_DAYS; default %(default)s)",
    )
    p.add_argument(
        "--episode-horizon-days",
        type=int,
        default=400,
        help="episode and KX state kept per patient, in days (the worker's "
        "TC_EPISODE_HORIZON_DAYS; default %(default)s)",
    )
    p.add_argument(
        "--patient-ref-pattern",
        metavar="REGEX",
        default=None,
        help="accepted alphabet of patient_ref, matched against the whole value (default: the "
        "worker's TC_PATIENT_REF_PATTERN, else printable ASCII without spaces)",
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="processes, each taking a share of the patients (default 1); the output is the "
        "same for any N: alerts in input line order, invalid lines in line order",
    )
    p.add_argument(
        "--status-out",
        metavar="PATH",
        default=None,
        help="write the VisitStatus v1 records (one current truth per visit) to PATH as JSON "
        "Lines, in the order the worker publishes them",
    )
    p.add_argument(
        "--notices-out",
        metavar="PATH",
        default=None,
        help="write the ComplianceNotice v1 records a backfill would have produced to PATH as "
        "JSON Lines: the visits' notices as checked, then the daily runs of each date through "
        "--as-of (each notice once)",
    )
    p.add_argument(
        "--as-of",
        metavar="DATE",
        type=_date,
        default=None,
        help="YYYY-MM-DD: audit the visits dated on or before DATE only (later lines are left "
        "out and counted) and run the notices' daily runs through DATE (default: the newest "
        "date of service read)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.audit import audit_main

    return audit_main(
        args.path,
        args.max_bytes,
        args.ruleset,
        args.horizon_days,
        args.episode_horizon_days,
        args.patient_ref_pattern,
        args.jobs,
        args.status_out,
        args.notices_out,
        args.as_of,
    )


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value
