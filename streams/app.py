"""The Faust app: wiring only (topics, the agent, web pages, timers, rebalance signals).

    visits -> validate -> check -> alerts | checked | deadletter

`create_app(settings)` builds it; importing this module has no side effects. `faust -A
streams.app worker` and `therapy-compliance worker` run the same app (the module attribute `app`
is built on first access from settings read once, `get_app()`) with the same worker class
(`streams.worker.BoundedWorker`, set as the app's `Worker`: broker preflight, payload-logging
clamp, bounded shutdown). The delivery guarantee lives in streams/pipeline.py and
streams/checkpoint.py: faust never commits the input topic (it is declared with acks disabled);
the pipeline commits an offset only after every output derived from it is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import TP as FaustTP
from mode import CrashingSupervisor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from compliance import Engine
from compliance.ruleset import load_ruleset
from runtime.settings import SecurityProtocol, Settings, settings_from_env_or_exit
from runtime.topics import ensure_topics, record_limit
from streams.checkpoint import TP
from streams.ehr_stages import EhrDeadLetters, EhrParser, VisitJoiner
from streams.health import Health, Stage
from streams.metrics import Metrics
from streams.offsets import OffsetProbe, OffsetTracker
from streams.pipeline import STARTS_WAIT_S, Pipeline
from streams.processor import Output, Processor, Record, VisitProcessor
from streams.publish import Publisher
from streams.tables import JOIN_TABLE, TABLE_NAME, TableStore
from streams.transaction import Store, Transaction

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
    tc_deadletter_limits: dict[str, Any]
    #: Repairs of keys whose restore skipped a late record, running (streams/tables.py).
    tc_repairs: set[asyncio.Future[None]]

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


def _record(message: Any) -> Record:
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        int(message.timestamp * 1000) if message.timestamp else None,
    )


def create_engine(settings: Settings) -> Engine:
    """The rule set named by the settings (the package's rules by default), loaded once."""
    ruleset = load_ruleset(settings.ruleset_dir, **settings.ruleset_files)
    return Engine(
        ruleset=ruleset,
        horizon_days=settings.history_horizon_days,
        episode_horizon_days=settings.episode_horizon_days,
    )


def create_app(
    settings: Settings, metrics: Metrics | None = None, engine: Engine | None = None
) -> ComplianceApp:
    from streams.worker import BoundedWorker  # the worker module imports nothing of ours back

    metrics = metrics or Metrics()
    engine = engine or create_engine(settings)
    app = ComplianceApp(
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
    app.tc_settings = settings
    app.tc_metrics = metrics
    app.tc_deadletter_limits = {}
    app.tc_repairs = set()

    async def send(out: Output) -> Awaitable[Any]:
        return await app.producer.send(
            out.topic,
            out.key,
            out.value,
            partition=out.partition,
            timestamp=None,
            headers=out.headers,
        )

    async def commit(offsets: Mapping[TP, int]) -> bool:
        # The transport consumer's commit of explicit offsets (faust's own `commit()` commits
        # what its ack bookkeeping allows, which never includes our input topics).
        committed = await _driver(app).consumer._commit(
            {FaustTP(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
        )
        return bool(committed)

    async def crash(exc: BaseException) -> None:
        from streams.worker import arm_watchdog

        # The stop after a crash commits and leaves the group too: bound it like a signal's.
        arm_watchdog(settings.shutdown_timeout_s, 1, "stop after a publish failure")
        await app.crash(exc)

    publisher = Publisher(send, metrics)
    probe = OffsetProbe(settings.bootstrap_servers, settings.aiokafka_security())
    app.tc_probe = probe

    def committed(tp: TP) -> int | None:
        offset = _driver(app).consumer._committed_offset.get(FaustTP(tp.topic, tp.partition))
        return int(offset) if offset is not None else None

    async def seek(tp: TP, offset: int) -> None:
        # On the consumer's own thread and loop (seek_wait): faust's Consumer.seek calls
        # aiokafka's seek from this loop, racing the thread's fetcher (seen: KeyError in
        # aiokafka's fetcher and a crashed Fetcher).
        await app.consumer.seek_wait({FaustTP(tp.topic, tp.partition): offset})

    async def resolve_gap(tp: TP, expected: int) -> int:
        first = await probe.first_offset(tp, expected)
        await seek(tp, first)
        return first

    def stage(
        name: str, topics: tuple[str, ...], processor: Processor, stores: tuple[Store, ...] = ()
    ) -> Stage:
        pipeline = Pipeline(
            processor,
            publisher,
            commit,
            metrics,
            on_fatal=crash,
            tracker=OffsetTracker(committed),
            resolve_gap=resolve_gap,
            generation=lambda: int(app.consumer_generation_id),
            handover_timeout_s=settings.handover_timeout_s,
        )
        source = app.topic(
            *topics,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            # Faust never acks, and so never commits, these topics: the pipeline does, once
            # outputs are durable. (faust's take_events acks a batch when the loop body
            # returns, and its ack bookkeeping also acks events it skips in a rebalance.)
            acks=False,
        )

        async def run(stream: faust.StreamT[bytes]) -> None:
            # noack_take hands over events without acking them (take_events acks on return).
            # It is defined on faust.Stream, not on the StreamT interface.
            async for events in cast(faust.Stream[bytes], stream).noack_take(
                settings.batch_size, within=settings.batch_within_s
            ):
                batch = _current(app, events)

                async def ack(batch: Sequence[faust.EventT[bytes]] = batch) -> None:
                    for event in batch:  # bookkeeping only: acks are off for these topics
                        await stream.ack(event)

                await pipeline.submit([_record(e.message) for e in batch], ack)

        app.agent(source, concurrency=1, supervisor_strategy=CrashingSupervisor, name=name)(run)
        return Stage(name, topics, pipeline, stores)

    # Per-patient state, co-partitioned with the input (same key, same partition count).
    history = app.Table(
        TABLE_NAME,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options=settings.rocksdb_options,
        extra_topic_configs=settings.changelog_topic_configs,
        help="Per-patient history for the rules that span visits (compliance/state.py).",
    )
    history_state = TableStore(history)
    processor = VisitProcessor(settings, metrics, engine, table=history_state)
    app.tc_deadletter_limits[settings.topic_deadletter] = processor
    stages = [stage("check_visits", (settings.topic_visits,), processor, (history_state,))]
    if settings.ehr_enabled:
        stages.extend(_ehr_stages(app, settings, metrics, stage))
    health = Health(
        stages,
        settings.stall_after_s,
        metrics,
        lambda: app.consumer,
        committed,
    )
    app.tc_processor, app.tc_stages, app.tc_health = processor, stages, health
    app.tc_ordered_topics = frozenset(t for st in stages for t in st.topics)
    app.tc_pipeline = stages[0].pipeline

    async def on_revoked(sender: Any, revoked: Set[Any], **kwargs: Any) -> None:
        wait = settings.revoke_wait_s
        await asyncio.gather(
            *(
                st.pipeline.on_revoked(_tps(revoked, st.topics), wait)
                for st in stages
                if _tps(revoked, st.topics)
            )
        )

    assigned_at = [time.monotonic()]

    # The generation whose tables faust last reported restored, and the assignment's own
    # (faust may report the recovery before or after our assignment handler runs).
    restored_generation = [-1]
    assignment: list[Any] = [(-1, [])]

    async def on_assigned(sender: Any, assigned: Set[Any], **kwargs: Any) -> None:
        assigned_at[0] = time.monotonic()
        for st in stages:
            st.pipeline.assigned(
                _tps(assigned, st.topics), awaiting_start=True, awaiting_recovery=True
            )
        generation = app.consumer_generation_id
        assignment[0] = (generation, [st.pipeline.epoch for st in stages])
        if restored_generation[0] == generation:
            restored()
        health.assigned_once = True
        # Each partition's start, read from the broker rather than from faust's bookkeeping
        # (streams/offsets.py): records that arrive first wait for it.
        inputs = [tp for st in stages for tp in _tps(assigned, st.topics)]
        epochs = [st.pipeline.epoch for st in stages]
        try:
            starts = await asyncio.wait_for(probe.starts(settings.app_id, inputs), STARTS_WAIT_S)
        except Exception as exc:  # then each partition's first record falls back on faust's
            log.warning("cannot read the partitions' start offsets (%s)", type(exc).__name__)
            starts = {}
        for st, epoch in zip(stages, epochs, strict=True):
            if st.pipeline.epoch == epoch:  # else a later rebalance has its own starts
                st.pipeline.starts_read(starts)
        health.update_lag()

    # mode types signal receivers as (sender, *args, signal=...); ours take the documented
    # positional set of partitions.
    app.on_partitions_revoked.connect(cast(Any, on_revoked))
    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    def restored() -> None:
        """The assignment's tables are restored: timers may run on its partitions, and keys
        whose restore skipped an earlier owner's late changelog record are written again, so
        the changelog's last record per key is this owner's (streams/tables.py)."""
        generation, epochs = assignment[0]
        if app.consumer_generation_id != generation:
            return
        for st, epoch in zip(stages, epochs, strict=True):
            st.pipeline.restored(epoch)
            if st.stores and st.pipeline.recovered:
                repair = _repair_work(st.pipeline, st.stores)
                app.tc_repairs.add(asyncio.ensure_future(st.pipeline.run_timer(repair)))

    async def on_recovered(sender: Any, **kwargs: Any) -> None:
        # faust sends on_rebalance_complete once the tables' changelogs are read (recovery),
        # also for a recovery a newer rebalance has overtaken: hence the generation and the
        # pipelines' epochs (a revoke moves them) in `restored`.
        seconds = time.monotonic() - assigned_at[0]
        metrics.state_recovery_seconds.set(seconds)
        restored_generation[0] = app.consumer_generation_id
        restored()
        for st in stages:
            st.pipeline.quiet()
        log.info("state restored from the changelogs in %.1fs", seconds)

    app.on_rebalance_complete.connect(cast(Any, on_recovered))

    async def measure_state() -> None:
        owned = stages[0].pipeline.owned or set()
        keys, size = history_state.size({tp.partition for tp in owned})
        metrics.state_keys.labels(table=TABLE_NAME).set(keys)
        metrics.state_bytes.labels(table=TABLE_NAME).set(size)

    app.timer(interval=30.0)(measure_state)

    async def commit_durable() -> None:
        for st in stages:
            await st.pipeline.commit()

    def highwater(tp: TP) -> int | None:
        try:
            return cast(int | None, app.consumer.highwater(FaustTP(tp.topic, tp.partition)))
        except Exception:  # not assigned (any more) or not fetched yet: unknown
            return None

    async def refresh_lag() -> None:
        health.update_lag()
        for st in stages:  # a partition that has records yet delivers none is re-read
            if app.rebalancing:  # records cannot flow (rebalance, table recovery)
                st.pipeline.quiet()
            else:
                st.pipeline.check_stalled(highwater)

    app.timer(interval=settings.commit_interval_s)(commit_durable)
    app.timer(interval=5.0)(refresh_lag)

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

    return app


def _ehr_stages(
    app: ComplianceApp,
    settings: Settings,
    metrics: Metrics,
    stage: Callable[[str, tuple[str, ...], Processor, tuple[Store, ...]], Stage],
) -> list[Stage]:
    """HL7 v2 / FHIR inbound -> parts (re-keyed by patient_ref) -> the join -> visits."""
    config = settings.ehr_config()
    letters = EhrDeadLetters(settings, metrics, _now)
    app.tc_deadletter_limits[settings.topic_ehr_deadletter] = letters
    parse = stage(
        "parse_ehr",
        (settings.topic_hl7_inbound, settings.topic_fhir_inbound),
        EhrParser(settings, config, metrics, letters=letters),
        (),
    )
    table = app.Table(
        JOIN_TABLE,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        options=settings.rocksdb_options,
        extra_topic_configs=settings.changelog_topic_configs,
        help="Each visit's charge and documentation parts until it is emitted (ehr/join.py).",
    )
    join_state = TableStore(table)
    joiner = VisitJoiner(settings, metrics, join_state, letters=letters)
    join = stage("join_visits", (settings.topic_ehr_parts,), joiner, (join_state,))

    async def expire() -> None:
        # Never during a rebalance: faust sets `rebalancing` as the revoke begins and clears it
        # only once the new assignment's tables are restored (faust/tables/recovery.py
        # on_recovery_completed). A transaction of its own, in the partitions' order
        # (streams/pipeline.py run_timer).
        if app.rebalancing:
            return
        pipeline = join.pipeline

        def work(txn: Transaction) -> list[Output]:
            partitions = pipeline.ready_partitions()
            return joiner.tick(txn, partitions) if partitions else []

        await pipeline.run_timer(work)

    app.timer(interval=min(30.0, max(1.0, settings.join_wait_s / 4)))(expire)
    return [parse, join]


def _repair_work(pipeline: Pipeline, stores: tuple[Store, ...]) -> Any:
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


def _now() -> datetime:
    return datetime.now(UTC)


def _driver(app: faust.App) -> Any:
    """The app with its transport-level attributes reachable: faust's ConsumerT interface
    lacks `_commit(offsets)` and `_committed_offset`, which its aiokafka Consumer has."""
    return app


def _current(app: faust.App, events: Sequence[Any]) -> list[Any]:
    """Events fetched before the latest rebalance are dropped unprocessed: their partition may
    belong to another worker now, and being uncommitted they are re-delivered to its owner."""
    generation = app.consumer_generation_id
    return [e for e in events if e.message.generation_id == generation]


_APP: ComplianceApp | None = None


def get_app() -> ComplianceApp:
    """The process's app, built once from the environment's settings (read once)."""
    global _APP
    if _APP is None:
        settings = settings_from_env_or_exit()
        if settings.event_loop == "uvloop":
            # uvloop's C event loop: +20-25% end-to-end throughput (bench/RESULTS.md). Set
            # before faust creates the worker's loop (faust's CLI does so after loading the app).
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        _APP = create_app(settings)
    return _APP


def __getattr__(name: str) -> Any:
    # `faust -A streams.app` looks up `streams.app.app`: build it then, not at import.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
