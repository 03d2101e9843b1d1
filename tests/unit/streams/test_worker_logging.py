"""The worker's logging never shows record payloads (docs/operations.md, "PHI"): client libraries
that log them at DEBUG are held at INFO (PAYLOAD_LOGGERS), and faust/mode's development lines
(`log.dev`, logged at INFO when the DEVLOG environment variable is set; faust's own fetch loop
logs record keys and values with it) are off whatever DEVLOG says."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import cast

import faust
import mode.utils.logging as mode_logging
import pytest

from runtime.logs import PAYLOAD_LOGGERS
from runtime.settings import Settings
from streams.worker import BoundedWorker, disable_dev_logging

MARK = "DEVLOGMARK"


@pytest.fixture
def worker() -> Iterator[BoundedWorker]:
    app = faust.App("tc-logging", broker="kafka://127.0.0.1:1", store="memory://")
    app.tc_settings = Settings.from_env({"TC_LOG_LEVEL": "debug"})  # type: ignore[attr-defined]
    levels = {name: logging.getLogger(name).level for name in PAYLOAD_LOGGERS}
    loop = asyncio.new_event_loop()
    try:
        yield BoundedWorker(app, loop=loop)
    finally:
        loop.close()
        # on_setup_root_logger sets these process-wide: other tests get them back as they were.
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def set_up_logging(worker: BoundedWorker) -> None:
    """What mode's Worker._setup_logging calls once the root logger is configured."""
    worker.on_setup_root_logger(logging.getLogger(), logging.DEBUG)


def shown(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_devlog_lines_never_show_payloads_once_the_worker_set_up_logging(
    worker: BoundedWorker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mode_logging, "DEVLOG", True)  # as if DEVLOG was set at import
    caplog.set_level(logging.DEBUG)
    # faust's fetch loop line, through a faust service's logger: with DEVLOG it is an INFO line,
    # which the INFO clamp lets through (the leak this guards against).
    dropped = "DROPPED MESSAGE ROFF %r: k=%r v=%r"
    app_log = cast(faust.App, worker.app).log
    app_log.dev(dropped, 7, MARK.encode(), MARK.encode())
    assert MARK in shown(caplog)

    set_up_logging(worker)
    caplog.clear()
    app_log.dev(dropped, 7, MARK.encode(), MARK.encode())
    # A service logger created afterwards, as faust's consumer has (module logger).
    consumer_log = mode_logging.CompositeLogger(logging.getLogger("faust.transport.consumer"))
    consumer_log.dev(dropped, 8, MARK.encode(), MARK.encode())
    assert MARK not in shown(caplog)
    assert mode_logging.DEVLOG is False


def test_devlog_set_is_reported_once_as_ignored(
    worker: BoundedWorker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mode_logging, "DEVLOG", True)
    caplog.set_level(logging.DEBUG)
    set_up_logging(worker)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in warnings] == ["streams.worker"]
    assert "DEVLOG is set but ignored" in warnings[0].getMessage()
    disable_dev_logging()  # again: nothing more to say
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_no_warning_when_devlog_is_not_set(
    worker: BoundedWorker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mode_logging, "DEVLOG", False)
    caplog.set_level(logging.DEBUG)
    set_up_logging(worker)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_client_payload_loggers_stay_at_info_at_debug_level(
    worker: BoundedWorker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    set_up_logging(worker)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(f"{name}.sub").debug("Sending (key=%r value=%r)", MARK, MARK)
    assert MARK not in shown(caplog)
