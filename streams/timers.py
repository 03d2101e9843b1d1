"""The worker's periodic work besides the stages' own timers: commit what is durable, refresh
lag and re-read partitions that stall, measure the state."""

from __future__ import annotations

from collections.abc import Sequence

import faust

from runtime.settings import Settings
from streams.health import Health, Stage
from streams.metrics import Metrics
from streams.processor import VisitProcessor
from streams.tables import TableStore


def add_timers(
    app: faust.App,
    settings: Settings,
    stages: Sequence[Stage],
    health: Health,
    metrics: Metrics,
) -> None:
    async def commit_durable() -> None:
        for st in stages:
            await st.pipeline.commit()

    async def refresh_lag() -> None:
        health.update_lag()
        for st in stages:  # a partition that has records yet delivers none is re-read
            if app.rebalancing:  # records cannot flow (rebalance, table recovery)
                st.pipeline.restart_stall_clock()
            else:
                st.pipeline.check_stalled(health.highwater)

    async def measure_state() -> None:
        for st in stages:
            owned = {tp.partition for tp in st.pipeline.owned or set()}
            if isinstance(st.pipeline.processor, VisitProcessor):
                st.pipeline.processor.measure_statuses(owned)
            for store in st.stores:
                if isinstance(store, TableStore):
                    keys, size = store.size(owned)
                    metrics.state_keys.labels(table=store.name).set(keys)
                    metrics.state_bytes.labels(table=store.name).set(size)

    app.timer(interval=settings.commit_interval_s)(commit_durable)
    app.timer(interval=5.0)(refresh_lag)
    app.timer(interval=30.0)(measure_state)
