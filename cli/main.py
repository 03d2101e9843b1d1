"""The `therapy-compliance` command: one subcommand per module of cli/commands/."""

from __future__ import annotations

import argparse
import sys

from cli.commands import COMMANDS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="therapy-compliance",
        description="Check PT/OT/SLP visit billing against the documentation.",
        epilog="Stream settings come from TC_* environment variables; see README.md.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
