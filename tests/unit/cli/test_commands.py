"""The command line: one subcommand per module of cli/commands/, each listed once."""

from __future__ import annotations

import os
import pkgutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import cli.commands
from cli.commands import COMMANDS
from cli.main import parser

ROOT = Path(__file__).parents[3]


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


@pytest.mark.parametrize("command", ["tail-alerts", "tail-status", "tail-notices"])
def test_an_unreachable_broker_is_one_line_and_exit_1(command: str) -> None:
    # cli/commands/_kafka.py: aiokafka raises its own KafkaConnectionError (not an OSError) when
    # it cannot bootstrap; the command says so in one line, no traceback, nothing left open.
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    env["TC_BROKERS"] = f"127.0.0.1:{port}"
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"therapy-compliance: cannot reach Kafka at 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr and "Unclosed" not in proc.stderr
