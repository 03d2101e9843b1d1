"""The Faust app: `faust -A streams.app worker` or `therapy-compliance worker`.

    visits -> validate -> check -> alerts | checked | deadletter

One agent, concurrency 1 (faust-streaming 0.15 can commit an offset past a record still being
processed with more, issue #606). Records are taken in small batches; every output of a batch is
acknowledged by the broker before the batch's input offsets are acked, so a committed offset
never covers a visit whose alerts were not written (at-least-once; alert ids are deterministic,
so a re-delivered visit yields the same ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError
from mode import CrashingSupervisor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.metrics import Metrics
from streams.processor import Output, Record, VisitProcessor
from streams.settings import SecurityProtocol, Settings
from streams.topics import ensure_topics

log = logging.getLogger("streams.app")

MAX_SEND_BACKOFF_S = 10.0
#: Batches whose outputs may await the broker's acknowledgement while the next is processed.
MAX_INFLIGHT_BATCHES = 4


class ComplianceApp(faust.App):
    """faust.App that creates its topics (when allowed) before the consumer subscribes."""

    tc_settings: Settings

    async def on_first_start(self) -> None:
        log.info("effective settings: %s", self.tc_settings.public_view())
        if self.tc_settings.create_topics:
            await ensure_topics(self.tc_settings)
        await super().on_first_start()


def _credentials(settings: Settings) -> Any:
    ctx = settings.ssl_context()
    if settings.security_protocol in (SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT):
        assert settings.sasl_password is not None
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=ctx,
            mechanism=settings.sasl_mechanism.value,
        )
    if settings.security_protocol is SecurityProtocol.SSL:
        return faust.SSLCredentials(ctx)
    return None


class Pipeline:
    """The agent's body. Each batch is processed and its outputs handed to the producer; a
    completion task waits until the broker acknowledged every output of that batch and only then
    acknowledges the batch's input events (manual acks on a `noack()` stream), so a committed
    offset never covers a visit whose outputs were not written. Up to `MAX_INFLIGHT_BATCHES`
    batches are in flight, so the next batch is processed while the previous one's outputs are
    being acknowledged; when they are all held (broker errors), the agent waits: back-pressure."""

    def __init__(
        self, app: faust.App, settings: Settings, metrics: Metrics, processor: VisitProcessor
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.processor = processor
        self.last_offsets: dict[int, int] = {}
        self.last_progress = time.time()
        #: Sends one output, returning the broker-acknowledgement future (tests replace it).
        self.send = self._send_with_producer
        self._slots = asyncio.Semaphore(MAX_INFLIGHT_BATCHES)
        self._inflight: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def _send_with_producer(self, out: Output) -> Awaitable[Any]:
        return await self.app.producer.send(
            out.topic, out.key, out.value, partition=None, timestamp=None, headers=None
        )

    async def submit(
        self, events: Sequence[faust.types.EventT[bytes]], stream: faust.StreamT[bytes]
    ) -> None:
        """Process a batch and start publishing it; returns once it is in flight."""
        if self._failure is not None:
            raise self._failure  # a batch could not be published: crash, nothing is acked
        started = time.perf_counter()
        outputs: list[Output] = []
        for event in events:
            m = event.message
            rec = Record(
                m.topic,
                m.partition,
                m.offset,
                m.key,
                m.value,
                int(m.timestamp * 1000) if m.timestamp else None,
            )
            outputs.extend(self.processor.handle(rec))
            self.last_offsets[m.partition] = m.offset
        futures = [await self.send(o) for o in outputs]
        await self._slots.acquire()
        task = asyncio.create_task(self._complete(events, stream, outputs, futures, started))
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def _complete(
        self,
        events: Sequence[faust.types.EventT[bytes]],
        stream: faust.StreamT[bytes],
        outputs: list[Output],
        futures: list[Awaitable[Any]],
        started: float,
    ) -> None:
        await self.publish(outputs, futures)
        for event in events:
            await stream.ack(event)
        for partition, offset in self.last_offsets.items():
            self.metrics.last_offset.labels(self.settings.topic_visits, str(partition)).set(offset)
        self.last_progress = time.time()
        self.metrics.last_progress.set(self.last_progress)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def drain(self) -> None:
        """Wait for the batches in flight (on stop: their events get acked and committed)."""
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def publish(
        self, outputs: list[Output], futures: list[Awaitable[Any]] | None = None
    ) -> None:
        """Wait until the broker acknowledged every output (sending them first unless their
        futures are given). On a broker error, re-send what failed with backoff: the batch is
        held and, with it, its input offsets; duplicates this may cause carry the same ids."""
        pending = outputs
        backoff = 0.1
        while pending:
            if futures is None:
                futures = [await self.send(o) for o in pending]
            results = await asyncio.gather(*futures, return_exceptions=True)
            futures = None
            failed = [
                o for o, r in zip(pending, results, strict=True) if isinstance(r, BaseException)
            ]
            errors = {type(r).__name__ for r in results if isinstance(r, BaseException)}
            if failed and not all(
                isinstance(r, (KafkaError, asyncio.TimeoutError, OSError))
                for r in results
                if isinstance(r, BaseException)
            ):
                raise RuntimeError(f"unrecoverable send error: {', '.join(sorted(errors))}")
            if failed:
                self.metrics.send_retries.inc(len(failed))
                log.warning(
                    "%d of %d outputs not acknowledged (%s); retrying in %.1fs",
                    len(failed),
                    len(pending),
                    ", ".join(sorted(errors)),
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_SEND_BACKOFF_S)
            pending = failed

    def health(self) -> tuple[bool, dict[str, Any]]:
        consumer = self.app.consumer
        assigned = sorted(
            tp.partition for tp in consumer.assignment() if tp.topic == self.settings.topic_visits
        )
        lag = self.update_lag()
        idle = time.time() - self.last_progress
        stalled = sum(lag.values()) > 0 and idle > self.settings.stall_after_s
        ok = bool(assigned) and not stalled
        status = "ok" if ok else ("unassigned" if not assigned else "stalled")
        return ok, {
            "status": status,
            "assigned_partitions": assigned,
            "lag": {str(p): n for p, n in lag.items()},
            "seconds_since_progress": round(idle, 1),
        }

    def update_lag(self) -> dict[int, int]:
        consumer = self.app.consumer
        lag: dict[int, int] = {}
        assigned = [tp for tp in consumer.assignment() if tp.topic == self.settings.topic_visits]
        self.metrics.assigned.set(len(assigned))
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            last = self.last_offsets.get(tp.partition)
            nxt = last + 1 if last is not None else (consumer._committed_offset.get(tp) or 0)
            lag[tp.partition] = max(0, highwater - nxt)
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag[tp.partition])
        return lag


def create_app(settings: Settings, metrics: Metrics | None = None) -> ComplianceApp:
    metrics = metrics or Metrics()
    app = ComplianceApp(
        settings.app_id,
        broker=settings.faust_broker,
        broker_credentials=_credentials(settings),
        env={},  # faust must not read BROKER_URL, WEB_PORT, ... behind our settings' back
        datadir=str(settings.data_dir),
        store="memory://",
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,  # faust's own internal topics (assignor leader)
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_max_request_size=settings.deadletter_max_bytes,
        stream_wait_empty=True,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        agent_supervisor=CrashingSupervisor,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.tc_settings = settings
    visits = app.topic(
        settings.topic_visits,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    pipeline = Pipeline(app, settings, metrics, VisitProcessor(settings, metrics))
    app.tc_pipeline = pipeline  # type: ignore[attr-defined]
    app.tc_metrics = metrics  # type: ignore[attr-defined]

    @app.agent(visits, concurrency=1, supervisor_strategy=CrashingSupervisor, name="check_visits")
    async def check_visits(stream: faust.StreamT[bytes]) -> None:
        manual = stream.noack()  # events are acked by the pipeline once their outputs are written
        try:
            async for events in manual.take_events(
                settings.batch_size, within=settings.batch_within_s
            ):
                await pipeline.submit(events, manual)
        finally:
            await pipeline.drain()

    @app.page("/metrics")
    async def metrics_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        pipeline.update_lag()
        return self.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @app.page("/health")
    async def health_page(self: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ok, body = pipeline.health()
        return self.json(body, status=200 if ok else 503)

    @app.timer(interval=5.0)
    async def refresh_lag() -> None:
        pipeline.update_lag()

    return app


settings = Settings.from_env()
app = create_app(settings)
