"""The faust transport the worker runs on: faust's aiokafka transport with its own fetch loop.

Registered through faust's extension point (the `faust.transports` entry point, name `tckafka`,
pyproject.toml) and selected by the broker URL scheme (`Settings.faust_broker`). Everything but
`Consumer._drain_messages` is faust's.

faust-streaming 0.15.3's fetch loop (`faust/transport/consumer.py` 1170-1250) hands each record
to the streams with `wait_first(callback(message), suspend_flow.wait())`, then records it as read:

- the `wait_first` costs ~46 us per record (4 tasks, an `asyncio.wait`, 3 cancellations) where
  a plain await costs well under 1 us: more than the whole rule engine per visit (issue 13);
- when a rebalance's flow stop wins, the hand-over is cancelled but the record is still marked
  read, and records below a partition's read offset are dropped as already seen: a record can
  vanish without reaching the agent (docs/reliability.md).

This loop awaits the hand-over directly while the flow is active and does not hand over records
fetched while it is stopped or in an earlier consumer generation (faust's stream would skip
them, `faust/streams.py` 1286-1300), nor mark them read: those fetched before the rebalance's
seek are fetched again after it, and any other loss is caught by the offset guard
(streams/offsets.py: a later record shows a gap; without one, the stall check). For the topics the pipeline guards (`ORDERED_TOPICS_ATTR` on the app: the input topics,
checked record by record against the next expected offset, streams/offsets.py) it also skips
faust's read-offset filter: the guard skips re-deliveries itself, and after its own seek back
to a skipped record the filter would drop exactly the records it asked for again. Other topics
(table changelogs during recovery) keep faust's filter and gap bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service, ServiceT

log = logging.getLogger(__name__)

#: Attribute of the faust app holding the frozenset of topic names the pipeline guards.
ORDERED_TOPICS_ATTR = "tc_ordered_topics"

#: Hand control back to the event loop every this many records of one fetched batch.
YIELD_EVERY = 100


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with a fetch loop that awaits the hand-over directly."""

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - broker
        app = self.app
        ordered: frozenset[str] = getattr(app, ORDERED_TOPICS_ATTR, frozenset())
        callback = self.callback
        read_offset = self._read_offset
        suspended = self.suspend_flow.is_set
        consumer_stopped = cast(Service, self)._stopped.is_set
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        acks_enabled_for = app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        noted: set[TP] = set()
        noted_generation = app.consumer_generation_id
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batch = self.getmany(timeout=1.0)
                await asyncio.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                async for tp, message in batch:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    if suspended() or message.generation_id != app.consumer_generation_id:
                        # A rebalance is under way, or this record was fetched before the last
                        # one (faust's stream would skip it): not handed over, not marked read;
                        # the new assignment's position fetches it again, and the offset guard
                        # (streams/offsets.py) re-reads whatever does not come.
                        if noted_generation != app.consumer_generation_id:
                            noted.clear()  # one debug line per partition and generation
                            noted_generation = app.consumer_generation_id
                        if tp not in noted:
                            noted.add(tp)
                            log.debug(
                                "%s[%d]: offset %d fetched during a rebalance (generation %s, "
                                "now %s, flow %s): not handed over",
                                tp.topic,
                                tp.partition,
                                message.offset,
                                message.generation_id,
                                app.consumer_generation_id,
                                "stopped" if suspended() else "active",
                            )
                        continue
                    offset = message.offset
                    if message.topic not in ordered:
                        last = read_offset[tp]
                        if last is not None and offset < last:
                            continue  # already read (faust's rule for the other topics)
                        if last and offset - last > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, last + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with `Consumer` above."""

    Consumer: ClassVar[type[Any]] = Consumer
