"""The command line: one subcommand per module of cli/commands/, each listed once."""

from __future__ import annotations

import pkgutil

import cli.commands
from cli.commands import COMMANDS
from cli.main import parser


def test_every_command_module_is_a_listed_subcommand() -> None:
    modules = {m.name for m in pkgutil.iter_modules(cli.commands.__path__)}
    listed = {c.__name__.rsplit(".", 1)[1] for c in COMMANDS}
    assert listed == {m for m in modules if not m.startswith("_")}
    assert len(COMMANDS) == len(listed)
    subcommands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert len(subcommands) == len(COMMANDS)
    for name in subcommands:
        assert parser().parse_args([name, *_required(name)]).run is not None


def _required(name: str) -> list[str]:
    return {
        "compare-rulesets": ["OLD", "NEW", "HISTORY"],
        "convert": ["--from", "hl7", "x.hl7"],
    }.get(name, [])
