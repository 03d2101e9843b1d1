"""The `therapy-compliance` subcommands, one module each: its arguments (`add`) and what it runs
(`run`, returning the exit status). The work itself lives in the modules they name (cli/audit.py,
the worker, the gateway, ...)."""

from __future__ import annotations

from cli.commands import (
    audit,
    compare,
    convert,
    demo_feed,
    demo_hl7,
    mllp_gateway,
    replay,
    tail_alerts,
    tail_notices,
    tail_status,
    worker,
)

#: In the order `therapy-compliance --help` lists them.
COMMANDS = (
    audit,
    compare,
    convert,
    mllp_gateway,
    demo_hl7,
    worker,
    demo_feed,
    tail_alerts,
    tail_status,
    tail_notices,
    replay,
)
