"""Running the Faust worker with a bounded shutdown."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import faust

log = logging.getLogger("streams.worker")

#: Libraries that log message payloads at DEBUG.
PAYLOAD_LOGGERS = ("aiokafka", "faust", "mode", "kafka")

#: Exit status when the shutdown watchdog had to cut a graceful stop short.
EXIT_SHUTDOWN_TIMEOUT = 75


class BoundedWorker(faust.Worker):
    """faust.Worker whose stop after a signal cannot take longer than `shutdown_timeout_s`.

    A graceful stop finishes the batch in flight, commits acknowledged offsets and leaves the
    consumer group (its partitions move at once to the other workers). Should anything in that
    sequence hang (an unreachable broker, say), the watchdog ends the process: offsets not yet
    committed are simply re-delivered, so the bound costs duplicates, never visits.
    """

    def __init__(self, app: faust.App, *, shutdown_timeout_s: float, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.shutdown_timeout_s = shutdown_timeout_s
        # faust's terminal spinner sets the root logger to DEBUG so that every record spins it:
        # every library debug call then builds a LogRecord (measurable CPU per message).
        self.spinner = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # Client libraries log record keys and values at DEBUG (aiokafka: "Sending (key=...
        # value=...)"). Payloads may carry PHI, so these loggers never go below INFO, whatever
        # TC_LOG_LEVEL says; our own loggers never log payloads at any level.
        for name in PAYLOAD_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.INFO))

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(
                self.shutdown_timeout_s, _hard_exit, args=(self.shutdown_timeout_s,)
            )
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)


def _hard_exit(timeout: float) -> None:
    sys.stderr.write(
        f"worker: graceful stop exceeded {timeout:.0f}s; exiting now "
        "(uncommitted records will be re-delivered)\n"
    )
    sys.stderr.flush()
    os._exit(EXIT_SHUTDOWN_TIMEOUT)


def run_worker() -> int:
    from streams.settings import Settings

    if Settings.from_env().event_loop == "uvloop":
        # uvloop's C event loop: +20-25% end-to-end throughput (bench/RESULTS.md), since faust
        # schedules several tasks and futures per consumed message. Set before the app exists.
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from streams.app import app, settings

    worker = BoundedWorker(
        app, shutdown_timeout_s=settings.shutdown_timeout_s, loglevel=settings.log_level.value
    )
    worker.execute_from_commandline()  # exits the process (SystemExit) when the worker stops
    return 0  # pragma: no cover
