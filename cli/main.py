"""The `therapy-compliance` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Literal

from compliance.state import DEFAULT_HORIZON_DAYS
from runtime.settings import Settings
from schemas.common import DeadLetterReason
from schemas.decode import DEFAULT_MAX_BYTES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="therapy-compliance",
        description="Check PT/OT/SLP visit billing against the documentation.",
        epilog="Stream settings come from TC_* environment variables; see README.md.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    audit = sub.add_parser(
        "audit", help="check TherapyVisitCompleted v1 JSON Lines; alerts to stdout"
    )
    audit.add_argument("path", nargs="?", default="-", help="JSON Lines file, or - for stdin")
    audit.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="largest accepted line in bytes (default %(default)s)",
    )
    audit.add_argument(
        "--ruleset",
        metavar="DIR",
        default=None,
        help="rule data directory (default: the rules shipped with the package); the worker's "
        "TC_RULESET_DIR",
    )
    audit.add_argument(
        "--horizon-days",
        type=int,
        default=DEFAULT_HORIZON_DAYS,
        help="same-day details kept per patient, in days (the worker's "
        "TC_HISTORY_HORIZON_DAYS; default %(default)s)",
    )
    audit.add_argument(
        "--episode-horizon-days",
        type=int,
        default=400,
        help="episode and KX state kept per patient, in days (the worker's "
        "TC_EPISODE_HORIZON_DAYS; default %(default)s)",
    )

    audit.add_argument(
        "--patient-ref-pattern",
        metavar="REGEX",
        default=None,
        help="accepted alphabet of patient_ref, matched against the whole value (default: the "
        "worker's TC_PATIENT_REF_PATTERN, else printable ASCII without spaces)",
    )

    audit.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="processes, each taking a share of the patients (default 1); the output is the "
        "same for any N: alerts in input line order, invalid lines in line order",
    )

    compare = sub.add_parser(
        "compare-rulesets",
        help="dry run of a rule-data update: alerts it would add and remove over a history",
    )
    compare.add_argument("old_dir", metavar="OLD_DIR", help="the rule set in use")
    compare.add_argument("new_dir", metavar="NEW_DIR", help="the updated rule set")
    compare.add_argument("history", metavar="HISTORY.jsonl", help="visits, as for audit")
    compare.add_argument("--json", action="store_true", help="one JSON object, not a table")

    conv = sub.add_parser(
        "convert",
        help="HL7 v2 / FHIR R4B messages -> TherapyVisitCompleted v1 JSON Lines (offline)",
    )
    conv.add_argument("--from", dest="source", choices=["hl7", "fhir"], required=True)
    conv.add_argument("path", help="file of messages, or - for stdin")

    sub.add_parser(
        "mllp-gateway",
        help="accept HL7 v2 over MLLP, write each message to the inbound topic, ACK when durable",
    )
    hl7demo = sub.add_parser(
        "demo-hl7", help="send realistic DFT^P03 and MDM^T02 messages to the MLLP gateway"
    )
    hl7demo.add_argument("--count", type=int, default=100, help="visits to send (default 100)")
    hl7demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    hl7demo.add_argument(
        "--print-profile",
        action="store_true",
        help="print the shipped integration profile with the demo's commercial payers added "
        "(for TC_EHR_PROFILE) and exit; sends nothing",
    )

    worker = sub.add_parser(
        "worker", help="run the stream worker (exactly faust -A streams.app worker)"
    )
    worker.add_argument(
        "faust_args", nargs=argparse.REMAINDER, help="further `faust worker` options"
    )

    feed = sub.add_parser("demo-feed", help="produce realistic synthetic visits to the input topic")
    feed.add_argument(
        "--rate", type=float, default=50.0, help="visits per second, 0 = max (default 50)"
    )
    feed.add_argument("--count", type=int, default=1000, help="visits to send (default 1000)")
    feed.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    feed.add_argument(
        "--malformed", type=float, default=0.02, help="share of malformed records (default 0.02)"
    )
    feed.add_argument(
        "--mode",
        choices=["visits", "episodes"],
        default="visits",
        help="independent visits with one flaw each, or patients' episodes of care "
        "(evaluation, plan, certification, treatment, progress reports, discharge, KX)",
    )

    tail = sub.add_parser("tail-alerts", help="print compliance alerts as they arrive")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest alert")
    tail.add_argument("--json", action="store_true", help="print the raw ComplianceAlert JSON")
    tail.add_argument("--limit", type=int, default=None, help="stop after N alerts")
    replay = sub.add_parser(
        "replay-deadletter", help="re-publish dead letters to the input topic after a fix"
    )
    replay.add_argument(
        "--reason",
        choices=[r.value for r in DeadLetterReason],
        help="only dead letters with this reason",
    )
    replay.add_argument(
        "--since",
        type=_timestamp,
        metavar="T",
        help="only dead letters rejected at or after T (ISO 8601, e.g. "
        "2026-03-02T15:00:00Z or 2026-03-02)",
    )
    replay.add_argument(
        "--rekey",
        action="store_true",
        help="use the visit's patient_ref as the key (for key rejections)",
    )
    replay.add_argument("--dry-run", action="store_true", help="count, send nothing")
    return p


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {value})")
    return value


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "audit":
        from cli.audit import audit_main

        return audit_main(
            args.path,
            args.max_bytes,
            args.ruleset,
            args.horizon_days,
            args.episode_horizon_days,
            args.patient_ref_pattern,
            args.jobs,
        )
    if args.command == "compare-rulesets":
        from cli.compare import compare_main

        return compare_main(args.old_dir, args.new_dir, args.history, args.json)
    if args.command == "worker":
        from streams.worker import run_worker

        run_worker(args.faust_args)  # settings are read once, by the app (streams.app)
    from cli.feed import demo_feed, tail_alerts
    from runtime.settings import settings_from_env_or_exit

    settings = settings_from_env_or_exit()
    if args.command == "convert":
        return _convert(settings, args.source, args.path)
    if args.command == "mllp-gateway":
        from gateway.server import gateway_main

        return gateway_main(settings)
    if args.command == "demo-hl7" and args.print_profile:
        from synthetic.hl7 import demo_profile_text

        sys.stdout.write(demo_profile_text())
        return 0
    if args.command == "demo-hl7":
        from cli.hl7_demo import demo_hl7_main

        return demo_hl7_main(settings, args.count, args.seed)
    try:
        if args.command == "demo-feed":
            asyncio.run(
                demo_feed(settings, args.rate, args.count, args.seed, args.malformed, args.mode)
            )
            return 0
        if args.command == "replay-deadletter":
            from cli.replay import replay_deadletters

            reason = DeadLetterReason(args.reason) if args.reason else None
            asyncio.run(replay_deadletters(settings, reason, args.since, args.rekey, args.dry_run))
            return 0
        if args.command == "tail-alerts":
            asyncio.run(tail_alerts(settings, args.from_beginning, args.json, args.limit))
            return 0
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(
            f"therapy-compliance: cannot reach Kafka at {settings.brokers}: {exc}", file=sys.stderr
        )
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


def _convert(settings: Settings, source: str, path: str) -> int:
    from ehr import ProfileError, convert_main

    try:
        config = settings.ehr_config()
    except (ProfileError, ValueError) as exc:
        print(
            f"therapy-compliance convert: {exc} (TC_EHR_PATIENT_KEY, TC_EHR_PROFILE)",
            file=sys.stderr,
        )
        return 2
    kind: Literal["hl7", "fhir"] = "hl7" if source == "hl7" else "fhir"
    return convert_main(kind, path, sys.stdout.buffer, sys.stderr, config)


if __name__ == "__main__":
    sys.exit(main())
