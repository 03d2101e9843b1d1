"""The Faust app: wiring only. The stages (streams/stages.py), the rebalance handlers
(streams/rebalance.py), the periodic work (streams/timers.py) and the web pages (streams/web.py)
are built here from the settings.

    visits -> validate -> check -> alerts | checked | deadletter

`create_app(settings)` builds it; importing this module has no side effects. `faust -A
streams.app worker` and `therapy-compliance worker` run the same app (the module attribute `app`
is built on first access from settings read once, `get_app()`) with the same worker class
(`streams.worker.BoundedWorker`, set as the app's `Worker`: broker preflight, payload-logging
clamp, bounded shutdown). The delivery guarantee lives in streams/pipeline.py and
streams/checkpoint.py: faust never commits the input topic (it is declared with acks disabled);
the pipeline commits an offset only after every output derived from it is acknowledged and
its state changes are durable (streams/transaction.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from mode import CrashingSupervisor

from compliance import Engine
from runtime.process import EXIT_CONFIG
from runtime.rules import RuleLoadError, load_rules
from runtime.settings import SecurityProtocol, Settings, settings_from_env_or_exit
from runtime.topics import ensure_topics, record_limit
from streams.broker import Broker
from streams.health import Health, Stage
from streams.metrics import Metrics
from streams.offsets import OffsetProbe
from streams.pipeline import Pipeline
from streams.processor import VisitProcessor
from streams.rebalance import Rebalance
from streams.stages import DeadLetterLimits, StageBuilder, check_stage, ehr_path
from streams.timers import add_timers
from streams.web import add_pages
from streams.worker import BoundedWorker, arm_watchdog

log = logging.getLogger("streams.app")


class ComplianceApp(faust.App):
    """faust.App that creates its topics (when allowed) before the consumer subscribes and
    drains the pipeline before faust stops its consumer."""

    tc_settings: Settings
    tc_metrics: Metrics
    tc_processor: VisitProcessor
    #: The check stage's pipeline (tests), and every stage's.
    tc_pipeline: Pipeline
    tc_stages: list[Stage]
    tc_health: Health
    tc_probe: OffsetProbe
    #: The input topics the pipeline checks offset by offset (streams/transport.py reads it).
    tc_ordered_topics: frozenset[str]
    #: False when the last stop left outputs unacknowledged (the worker then exits 75).
    tc_clean_stop: bool = True
    #: Each dead-letter topic -> what fits letters to its limit (read from the broker at start).
    tc_deadletter_limits: DeadLetterLimits
    tc_rebalance: Rebalance

    async def on_first_start(self) -> None:
        settings = self.tc_settings
        log.info("effective settings: %s", settings.public_view())
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust's mkdir makes one level
        if settings.create_topics:
            await ensure_topics(settings)
        for topic, letters in self.tc_deadletter_limits.items():
            limit = await record_limit(settings, topic)
            if limit is not None and limit < settings.deadletter_max_bytes:
                log.warning(
                    "topic %s accepts records up to %d bytes (TC_DEADLETTER_MAX_BYTES=%d): dead "
                    "letters are fitted to the topic's limit",
                    topic,
                    limit,
                    settings.deadletter_max_bytes,
                )
                letters.deadletter_limit = limit
        await super().on_first_start()

    async def on_stop(self) -> None:
        # Before faust stops the consumer: finish (or give up on) the batches in flight and
        # commit what is durable. Bounded so the worker's shutdown watchdog rarely has to fire.
        results = await asyncio.gather(
            *(st.pipeline.close(self.tc_settings.drain_timeout_s) for st in self.tc_stages)
        )
        self.tc_clean_stop = all(results)
        await self.tc_probe.close()
        await super().on_stop()


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


def create_engine(settings: Settings) -> Engine:
    """The rule set named by the settings (the package's rules by default), loaded once."""
    ruleset = load_rules(settings)  # the loader audit uses too (runtime/rules.py)
    return Engine(
        ruleset=ruleset,
        horizon_days=settings.history_horizon_days,
        episode_horizon_days=settings.episode_horizon_days,
    )


def create_app(
    settings: Settings, metrics: Metrics | None = None, engine: Engine | None = None
) -> ComplianceApp:
    """The worker: faust's app with the stages (streams/stages.py), the rebalance handlers
    (streams/rebalance.py), the periodic work (streams/timers.py) and the web pages."""
    metrics = metrics or Metrics()
    app = _faust_app(settings)
    app.tc_settings, app.tc_metrics = settings, metrics
    probe = OffsetProbe(settings.bootstrap_servers, settings.aiokafka_security())
    builder = StageBuilder(app, settings, metrics, Broker(app, probe), _crash(app, settings))
    limits: DeadLetterLimits = {}
    check, processor = check_stage(builder, engine or create_engine(settings), limits)
    stages = [check, *(ehr_path(builder, limits) if settings.ehr_enabled else [])]
    health = Health(
        stages, settings.stall_after_s, metrics, lambda: app.consumer, builder.broker.committed
    )
    rebalance = Rebalance(app, settings, stages, health, probe, metrics)
    rebalance.connect()
    add_timers(app, settings, stages, health, metrics)
    add_pages(app, health, metrics)
    app.tc_probe, app.tc_rebalance, app.tc_deadletter_limits = probe, rebalance, limits
    app.tc_processor, app.tc_stages, app.tc_health = processor, stages, health
    app.tc_ordered_topics = frozenset(t for st in stages for t in st.topics)
    app.tc_pipeline = check.pipeline
    return app


def _faust_app(settings: Settings) -> ComplianceApp:
    return ComplianceApp(
        settings.app_id,
        broker=settings.faust_broker,
        broker_credentials=_credentials(settings),
        env={},  # faust must not read BROKER_URL, WEB_PORT, ... behind our settings' back
        datadir=str(settings.data_dir),
        # faust's stores with tag-ordered changelog recovery (streams/tables.py).
        store="tcrocksdb://" if settings.store == "rocksdb" else "tcmemory://",
        web_enabled=True,
        # faust's /table endpoints serve table values (a patient's history) and /router the
        # cluster's worker URLs to anyone who reaches the web port: off (tested: 404).
        web_tables_enabled=False,
        web_router_enabled=False,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,  # faust's own internal topics (assignor leader)
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_request_timeout=settings.producer_request_timeout_s,
        producer_max_request_size=settings.deadletter_max_bytes,
        stream_wait_empty=True,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        agent_supervisor=CrashingSupervisor,
        key_serializer="raw",
        value_serializer="raw",
        Worker=BoundedWorker,
    )


def _crash(app: faust.App, settings: Settings) -> Callable[[BaseException], Awaitable[None]]:
    async def crash(exc: BaseException) -> None:
        # The stop after a crash commits and leaves the group too: bound it like a signal's.
        arm_watchdog(settings.shutdown_timeout_s, 1, "stop after a publish failure")
        await app.crash(exc)

    return crash


_APP: ComplianceApp | None = None


def get_app() -> ComplianceApp:
    """The process's app, built once from the environment's settings (read once)."""
    global _APP
    if _APP is None:
        settings = settings_from_env_or_exit()
        missing = settings.ehr_profile_problem()
        if missing is not None:  # before any broker or rule set: a setting, exit 2 like one
            sys.stderr.write(f"therapy-compliance worker: {missing}\n")
            raise SystemExit(2)
        if settings.event_loop == "uvloop":
            # uvloop's C event loop: +20-25% end-to-end throughput (bench/RESULTS.md). Set
            # before faust creates the worker's loop (faust's CLI does so after loading the app).
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:  # a rule set that does not load stops the worker in one line, naming the file
            engine = create_engine(settings)
        except RuleLoadError as exc:  # names the file and where it came from
            sys.stderr.write(f"therapy-compliance worker: {exc}\n")
            raise SystemExit(EXIT_CONFIG) from None
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"therapy-compliance worker: rule set: {exc}\n")
            raise SystemExit(EXIT_CONFIG) from None
        _APP = create_app(settings, engine=engine)
    return _APP


def __getattr__(name: str) -> Any:
    # `faust -A streams.app` looks up `streams.app.app`: build it then, not at import.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
