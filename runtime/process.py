"""Process-level facts every program shares: exit statuses and the stop watchdog."""

from __future__ import annotations

import os
import sys
import threading

#: The broker cannot be reached or refuses the credentials at start (EX_UNAVAILABLE).
EXIT_NO_BROKER = 69
#: A stop had to be cut short (the watchdog), or gave up on unacknowledged outputs.
EXIT_SHUTDOWN_TIMEOUT = 75
#: Existing topics or settings contradict what the program needs (EX_CONFIG).
EXIT_CONFIG = 78


def arm_watchdog(timeout: float, code: int, what: str, prog: str, consequence: str) -> None:
    """End the process after `timeout` seconds whatever the event loop is doing (a stop that
    waits on an unresponsive broker). Nothing is lost: what was not committed (worker) or
    acknowledged (gateway) is sent again; `consequence` says which, in the message."""

    def _exit() -> None:
        sys.stderr.write(f"{prog}: {what} exceeded {timeout:g}s; exiting now ({consequence})\n")
        sys.stderr.flush()
        os._exit(code)

    timer = threading.Timer(timeout, _exit)
    timer.daemon = True
    timer.start()
