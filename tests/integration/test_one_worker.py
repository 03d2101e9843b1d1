"""One way to run the worker: `faust -A streams.app worker` and `therapy-compliance worker`
build the same app (settings read once) with the same Worker class, so both have the broker
preflight, the payload-logging clamp, the bounded shutdown and the setting errors."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.factories import raw, timed_visit
from tests.integration.harness import (
    WORKER_COMMANDS,
    Topics,
    Worker,
    consume,
    create_topics,
    free_port,
    produce,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("command", list(WORKER_COMMANDS))]
MARK = "PAYLOADMARK"


@pytest.mark.asyncio
async def test_debug_logging_never_shows_payloads_and_sigterm_is_bounded(
    make_worker: Any, command: str
) -> None:
    t = Topics.unique(f"one-{command}")
    await create_topics(t)
    worker: Worker = make_worker(t, TC_LOG_LEVEL="debug", TC_SHUTDOWN_TIMEOUT_S="10")
    worker.command = WORKER_COMMANDS[command]
    worker.start()
    data = timed_visit(("97110", 3, 33), ("97140", 1, 7))
    data.update(patient_ref=f"P-{MARK}", visit_id=f"V-{MARK}", event_id=f"E-{MARK}")
    data["services"][0]["note"] = f"{MARK} said"
    await produce(t.visits, [(f"P-{MARK}".encode(), raw(data))])
    await consume([t.checked], until=1)
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout=30) == 0, worker.tail()
    assert time.monotonic() - started < 10
    log = worker.log_path.read_text(errors="replace")
    assert "[DEBUG]" in log  # TC_LOG_LEVEL decided, whatever the command's own default
    assert MARK not in log and "Sending (key=" not in log


def test_unreachable_broker_fails_at_once_with_one_line(tmp_path: Path, command: str) -> None:
    worker = Worker(
        Topics.unique("nobroker"),
        tmp_path,
        "tc-nobroker",
        {"TC_BROKERS": f"127.0.0.1:{free_port()}", "TC_STARTUP_WAIT_S": "0"},
        command=WORKER_COMMANDS[command],
    )
    worker.start(wait_healthy=False)
    assert worker.proc is not None
    assert worker.proc.wait(60) == 69, worker.tail()
    out = worker.log_path.read_text()
    assert "therapy-compliance worker: cannot connect to Kafka at 127.0.0.1:" in out
    assert "Traceback" not in out


def test_a_bad_setting_names_the_variable(tmp_path: Path, command: str) -> None:
    env = Worker(Topics.unique("badsetting"), tmp_path, "tc-bad", {"TC_PARTITIONS": "0"}).env
    proc = subprocess.run(
        WORKER_COMMANDS[command], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "invalid setting TC_PARTITIONS" in proc.stderr and "Traceback" not in proc.stderr
