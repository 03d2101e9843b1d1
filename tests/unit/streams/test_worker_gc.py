"""The worker's collector settings (streams/worker.py tune_gc; TC_GC_THRESHOLD)."""

from __future__ import annotations

import gc

from runtime.settings import Settings
from streams.worker import tune_gc


def test_set_the_start_up_objects_are_frozen_and_the_first_threshold_raised() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(Settings.from_env({"TC_GC_THRESHOLD": "12345"}).gc_threshold)
        assert gc.get_threshold() == (12345, *before[1:])
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        tune_gc(Settings.from_env({}).gc_threshold)  # the default: left as it is
        assert gc.get_threshold() == (12345, *before[1:]) and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
