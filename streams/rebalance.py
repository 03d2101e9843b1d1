"""The worker's side of a rebalance, for every stage: give up (or finish) what is in flight when
partitions are revoked; on assignment, read each partition's start from the broker and wait for
the tables' restore; once restored, open the timers and write again the keys whose restore
skipped an earlier owner's late changelog record (streams/tables.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence, Set
from typing import Any, cast

import faust

from runtime.settings import Settings
from streams.checkpoint import TP
from streams.health import Health, Stage
from streams.metrics import Metrics
from streams.offsets import OffsetProbe
from streams.pipeline import STARTS_WAIT_S, Pipeline, TimerWork
from streams.processor import Output
from streams.tables import TableStore
from streams.transaction import Store, Transaction

log = logging.getLogger("streams.rebalance")


class Rebalance:
    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        stages: Sequence[Stage],
        health: Health,
        probe: OffsetProbe,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.settings = settings
        self.stages = list(stages)
        self.health = health
        self.probe = probe
        self.metrics = metrics
        self.assigned_at = time.monotonic()
        #: The generation whose tables faust last reported restored, and the current
        #: assignment's generation and pipeline epochs (faust may report the restore before or
        #: after our assignment handler runs; a revoke moves the epochs).
        self.restored_generation = -1
        self.assignment: tuple[int, list[int]] = (-1, [])
        #: Repairs running (kept referenced until done).
        self.repairs: set[asyncio.Future[None]] = set()

    def connect(self) -> None:
        # mode types signal receivers as (sender, *args, signal=...); ours take the documented
        # positional set of partitions.
        self.app.on_partitions_revoked.connect(cast(Any, self.revoked))
        self.app.on_partitions_assigned.connect(cast(Any, self.assigned))
        self.app.on_rebalance_complete.connect(cast(Any, self.recovered))

    async def revoked(self, sender: Any, revoked: Set[Any], **kwargs: Any) -> None:
        wait = self.settings.revoke_wait_s
        await asyncio.gather(
            *(
                st.pipeline.on_revoked(_tps(revoked, st.topics), wait)
                for st in self.stages
                if _tps(revoked, st.topics)
            )
        )

    async def assigned(self, sender: Any, assigned: Set[Any], **kwargs: Any) -> None:
        self.assigned_at = time.monotonic()
        for st in self.stages:
            st.pipeline.assigned(
                _tps(assigned, st.topics), awaiting_start=True, awaiting_recovery=True
            )
        generation = self.app.consumer_generation_id
        epochs = [st.pipeline.epoch for st in self.stages]
        self.assignment = (generation, epochs)
        if self.restored_generation == generation:
            self._restored()
        self.health.assigned_once = True
        # Each partition's start, read from the broker rather than from faust's bookkeeping
        # (streams/offsets.py): records that arrive first wait for it.
        inputs = [tp for st in self.stages for tp in _tps(assigned, st.topics)]
        try:
            starts = await asyncio.wait_for(
                self.probe.starts(self.settings.app_id, inputs), STARTS_WAIT_S
            )
        except Exception as exc:  # then each partition's first record falls back on faust's
            log.warning("cannot read the partitions' start offsets (%s)", type(exc).__name__)
            starts = {}
        for st, epoch in zip(self.stages, epochs, strict=True):
            if st.pipeline.epoch == epoch:  # else a later rebalance has its own starts
                st.pipeline.starts_read(starts)
        self.health.update_lag()

    async def recovered(self, sender: Any, **kwargs: Any) -> None:
        # faust sends on_rebalance_complete once the tables' changelogs are read (recovery),
        # also for a recovery a newer rebalance has overtaken: hence the generation and the
        # pipelines' epochs in `_restored`.
        seconds = time.monotonic() - self.assigned_at
        self.metrics.state_recovery_seconds.set(seconds)
        self.restored_generation = self.app.consumer_generation_id
        self._restored()
        for st in self.stages:
            st.pipeline.restart_stall_clock()
        log.info("state restored from the changelogs in %.1fs", seconds)

    def _restored(self) -> None:
        """The assignment's tables are restored: timers may run on its partitions, and keys
        whose restore skipped an earlier owner's late changelog record are written again, so
        the changelog's last record per key is this owner's."""
        generation, epochs = self.assignment
        if self.app.consumer_generation_id != generation:
            return
        for st, epoch in zip(self.stages, epochs, strict=True):
            st.pipeline.restored(epoch)
            if st.stores and st.pipeline.recovered:
                repair = repair_work(st.pipeline, st.stores)
                task = asyncio.ensure_future(st.pipeline.run_timer(repair))
                self.repairs.add(task)
                task.add_done_callback(self.repairs.discard)


def repair_work(pipeline: Pipeline, stores: tuple[Store, ...]) -> TimerWork:
    """A transaction writing each skipped key's current value again (with this owner's tag)."""

    def work(txn: Transaction) -> list[Output]:
        for store in stores:
            if not isinstance(store, TableStore):
                continue
            for partition in pipeline.ready_partitions():
                for key in store.take_skipped(partition):
                    txn.put(store, partition, key, txn.get(store, partition, key))
        return []

    return work


def _tps(tps: Set[Any], topics: tuple[str, ...]) -> list[TP]:
    return [TP(tp.topic, tp.partition) for tp in tps if tp.topic in topics]
