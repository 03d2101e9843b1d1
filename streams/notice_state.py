"""A partition's state for the notices' daily run (streams/notice_run.py), kept in the history
table under a partition key, through the state transaction."""

from __future__ import annotations

from datetime import date, timedelta

import msgspec


class RunState(msgspec.Struct, array_like=True, gc=False):
    """A partition's daily-run state. Fields are appended, never reordered."""

    #: The earliest date of service processed in the partition (where a first run starts).
    since: date | None = None
    #: The last date whose run finished.
    done_through: date | None = None
    #: The run in progress: its first and last date, and the last patient done (None: none yet).
    start: date | None = None
    target: date | None = None
    cursor: bytes | None = None
    #: Obligations due within DUE_SOON_DAYS of the run's date, by kind: counting in the run in
    #: progress (`counting`), and as of the last finished run (`due_soon`, the gauge).
    counting: tuple[tuple[str, int], ...] = ()
    due_soon: tuple[tuple[str, int], ...] = ()


_DECODER = msgspec.msgpack.Decoder(RunState)
_ENCODER = msgspec.msgpack.Encoder()


def run_key(partition: int) -> bytes:
    """The partition's run state: 0x00 starts no patient's key (state_layout.tally_key)."""
    return b"\x00notice-run-%d" % partition


def read_state(raw: bytes | None) -> RunState:
    return RunState() if raw is None else _DECODER.decode(raw)


def encode_state(state: RunState) -> bytes:
    return _ENCODER.encode(state)


def judged_through(state: RunState, patient: bytes) -> date | None:
    """The last date the daily run has judged `patient` through: the run in progress's last
    date once its cursor is at or past the patient; the day before the run's first date when
    the run has not reached it (the run judges it from there: a first run starts at `since`,
    which a visit dated earlier does not move); else the last date done (None: no run yet)."""
    if state.target is not None and state.start is not None:
        if state.cursor is not None and patient <= state.cursor:
            return state.target
        return state.start - timedelta(days=1)
    return state.done_through


__all__ = ["RunState", "encode_state", "judged_through", "read_state", "run_key"]
