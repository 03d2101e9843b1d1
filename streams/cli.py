"""The `therapy-compliance` command."""

from __future__ import annotations

import argparse
import sys

from schemas.decode import DEFAULT_MAX_BYTES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="therapy-compliance",
        description="Check PT/OT/SLP visit billing against the documentation.",
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "audit":
        from streams.audit import audit_main

        return audit_main(args.path, args.max_bytes)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
