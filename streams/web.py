"""The worker's web pages: `/metrics` (Prometheus) and `/health` (streams/health.py). faust's own
`/table` and `/router` pages are off (streams/app.py)."""

from __future__ import annotations

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.health import Health
from streams.metrics import Metrics


def add_pages(app: faust.App, health: Health, metrics: Metrics) -> None:
    @app.page("/metrics")
    async def metrics_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        health.update_lag()
        return self.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @app.page("/health")
    async def health_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ok, body = health.status()
        return self.json(body, status=200 if ok else 503)
