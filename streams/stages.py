"""The worker's stages, each an agent feeding a pipeline (streams/pipeline.py):

    check:  therapy.visit.completed.v1 -> alerts | checked | dead letters   (table patient-history)
    parse:  ehr.hl7v2.inbound.v1 | ehr.fhir.inbound.v1 -> ehr.visit.parts.v1 | EHR dead letters
    join:   ehr.visit.parts.v1 -> therapy.visit.completed.v1                (table ehr-visit-join)
            + its expiry timer

`StageBuilder.build` wires one: the input topics (faust never acks them: the pipeline commits),
the agent taking batches without acking them, and the pipeline with its offset guard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import faust
from faust.types import TP as FaustTP
from mode import CrashingSupervisor

from compliance import Engine
from runtime.settings import Settings
from streams.broker import Broker
from streams.checkpoint import TP
from streams.ehr_stages import EhrDeadLetters, EhrParser, VisitJoiner
from streams.health import Stage
from streams.metrics import Metrics
from streams.notice_run import NoticeRun, Step, run_steps
from streams.offsets import OffsetTracker
from streams.pipeline import Pipeline
from streams.processor import Output, Processor, Record, VisitProcessor
from streams.publish import Publisher
from streams.tables import JOIN_TABLE, TABLE_NAME, TableStore
from streams.transaction import Store, Transaction


class FitsDeadLetters(Protocol):
    """What fits a stage's dead letters: its topic's record limit, set once read (app.py)."""

    deadletter_limit: int


#: Each dead-letter topic -> what fits letters to it.
DeadLetterLimits = dict[str, FitsDeadLetters]


class StageBuilder:
    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        metrics: Metrics,
        broker: Broker,
        on_fatal: Callable[[BaseException], Awaitable[None]],
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.broker = broker
        self.publisher = Publisher(broker.send, metrics, group=broker.group)
        self.on_fatal = on_fatal

    def table(self, name: str, help: str) -> TableStore:
        """A table co-partitioned with the input (same key, same partition count)."""
        s = self.settings
        return TableStore(
            self.app.Table(
                name,
                key_type=bytes,
                value_type=bytes,
                partitions=s.partitions,
                options=s.rocksdb_options,
                extra_topic_configs=s.changelog_topic_configs,
                help=help,
            )
        )

    def build(
        self,
        name: str,
        topics: tuple[str, ...],
        processor: Processor,
        stores: tuple[Store, ...] = (),
    ) -> Stage:
        app, settings = self.app, self.settings
        pipeline = Pipeline(
            processor,
            self.publisher,
            self.broker.commit,
            self.metrics,
            on_fatal=self.on_fatal,
            tracker=OffsetTracker(self.broker.committed),
            resolve_gap=self.broker.resolve_gap,
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


def check_stage(
    builder: StageBuilder, engine: Engine, limits: DeadLetterLimits
) -> tuple[Stage, VisitProcessor]:
    """The checks, with each patient's history in the table `patient-history`."""
    s = builder.settings
    history = builder.table(
        TABLE_NAME, "Per-patient history for the rules that span visits (compliance/state.py)."
    )
    processor = VisitProcessor(s, builder.metrics, engine, table=history)
    limits[s.topic_deadletter] = processor
    stage = builder.build("check_visits", (s.topic_visits,), processor, (history,))
    notice_timer(builder, stage, NoticeRun(s, builder.metrics, engine, history, _notice_clock(s)))
    return stage, processor


def notice_timer(builder: StageBuilder, stage: Stage, run: NoticeRun) -> None:
    """The notices' daily run (streams/notice_run.py): every TC_NOTICE_RUN_INTERVAL_S, on the
    owned partitions whose tables are restored, one chunk per transaction until none is left.
    Never during a rebalance."""
    app = builder.app
    pipeline = stage.pipeline

    def caught_up(partition: int) -> bool:
        """Every record of the partition's input seen so far is processed (its state is in
        the transactions before the run's): a run over a partial backlog would judge dates
        with visits missing that are already on the topic, and not judge them again."""
        tp = TP(builder.settings.topic_visits, partition)
        try:
            highwater = app.consumer.highwater(FaustTP(tp.topic, tp.partition))
        except Exception:
            return False  # not fetched yet: unknown
        if highwater is None:
            return False
        last = pipeline.last_offsets.get(tp)
        position = last + 1 if last is not None else builder.broker.committed(tp) or 0
        return position >= highwater

    def behind() -> bool:
        """An owned partition's input not caught up: the run waits (run_steps). All of them,
        not just one: a step judges the first partition that has a run to do, and a partition
        behind may be the one."""
        return any(not caught_up(p) for p in pipeline.ready_partitions())

    outcome = Step.DONE

    def work(txn: Transaction) -> list[Output]:
        nonlocal outcome
        ready = pipeline.ready_partitions()
        if not ready or app.rebalancing:
            return []
        if behind():
            outcome = Step.BEHIND  # since run_steps looked (a slot was awaited)
            return []
        out = run.step(txn, ready)
        outcome = Step.STEPPED if run.more else Step.DONE
        return out

    async def step() -> Step:
        nonlocal outcome
        outcome = Step.DONE  # also when run_timer does not call `work` (closing, revoked)
        await pipeline.run_timer(work)
        return outcome

    async def daily() -> None:
        await run_steps(
            step,
            lambda: run.spent,
            behind,
            lambda: app.rebalancing,
            builder.settings.notice_run_interval_s,
        )
        run.measure({tp.partition for tp in pipeline.owned or set()})

    app.timer(interval=builder.settings.notice_run_interval_s)(daily)


def _notice_clock(s: Settings) -> Callable[[], datetime]:
    """The wall clock, or TC_NOTICE_AS_OF's date at the daily run's time (a run as of a date)."""
    pinned = s.notice_as_of
    if pinned is None:
        return _now
    moment = datetime.combine(pinned, s.notice_daily_time, s.clinic_zone)
    return lambda: moment


def ehr_path(builder: StageBuilder, limits: DeadLetterLimits) -> list[Stage]:
    """HL7 v2 / FHIR inbound -> parts (re-keyed by patient_ref) -> the join -> visits, and the
    join's expiry."""
    app, s, metrics = builder.app, builder.settings, builder.metrics
    letters = EhrDeadLetters(s, metrics, _now)
    limits[s.topic_ehr_deadletter] = letters
    parse = builder.build(
        "parse_ehr",
        (s.topic_hl7_inbound, s.topic_fhir_inbound),
        EhrParser(s, s.ehr_config(), metrics, letters=letters),
    )
    table = builder.table(
        JOIN_TABLE,
        "Each visit's charge and documentation parts until it is emitted (ehr/join.py).",
    )
    joiner = VisitJoiner(s, metrics, table, letters=letters)
    join = builder.build("join_visits", (s.topic_ehr_parts,), joiner, (table,))

    async def expire() -> None:
        # Never during a rebalance, and only on partitions whose tables are restored for the
        # current assignment (Pipeline.ready_partitions); a transaction of its own, in the
        # partitions' order (Pipeline.run_timer).
        if app.rebalancing:
            return
        pipeline = join.pipeline

        def work(txn: Transaction) -> list[Output]:
            partitions = pipeline.ready_partitions()
            return joiner.tick(txn, partitions) if partitions and not app.rebalancing else []

        await pipeline.run_timer(work)

    app.timer(interval=min(30.0, max(1.0, s.join_wait_s / 4)))(expire)
    return [parse, join]


def _record(message: Any) -> Record:
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        int(message.timestamp * 1000) if message.timestamp else None,
    )


def _current(app: faust.App, events: Sequence[Any]) -> list[Any]:
    """Events fetched before the latest rebalance are dropped unprocessed: their partition may
    belong to another worker now, and being uncommitted they are re-delivered to its owner."""
    generation = app.consumer_generation_id
    return [e for e in events if e.message.generation_id == generation]


def _now() -> datetime:
    return datetime.now(UTC)
