"""One MLLP connection: read blocks in order, answer each before reading on (request/response),
resynchronise on the next start block after a framing fault, close when that is impossible."""

from __future__ import annotations

import asyncio
import logging
import time

from ehr import mllp_frame
from ehr.rejection import shown
from gateway.framing import Aborted, Deframer, Event, Frame, Oversize, Unframed
from gateway.handler import Answer, MessageHandler
from gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class Connection:
    def __init__(
        self,
        handler: MessageHandler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        cid: int,
        idle_timeout_s: float,
        metrics: GatewayMetrics,
    ) -> None:
        self.handler = handler
        self.reader = reader
        self.writer = writer
        self.cid = cid
        self.idle_timeout_s = idle_timeout_s
        self.metrics = metrics
        #: True while received messages are being handled: a stop lets them finish.
        self.busy = False
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"

    def stop(self) -> None:
        """Graceful stop: an idle connection closes now, a busy one after its current messages."""
        self.stopping = True
        if not self.busy and self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        self.metrics.connections.inc()
        self.metrics.connections_open.inc()
        log.info("conn=%d open from %s", self.cid, self.peer)
        why = "closed"
        try:
            why = await self._serve()
        except asyncio.CancelledError:
            why = "closed by the gateway's stop"
        except (ConnectionError, OSError) as exc:
            why = f"connection lost ({type(exc).__name__})"
        except Exception as exc:  # a bug: close this connection (un-ACKed: the sender resends)
            log.error("conn=%d internal error %s", self.cid, type(exc).__name__)
            why = "closed after an internal error"
        finally:
            self.metrics.connections_open.dec()
            self.writer.close()
            log.info("conn=%d %s", self.cid, why)

    async def _serve(self) -> str:
        deframer = Deframer(self.handler.max_bytes)
        last = time.monotonic()
        holding_since: float | None = None
        while not self.stopping:
            # A started block (or stray bytes) must end within the idle timeout; a connection
            # with nothing pending may stay quiet that long.
            since = holding_since if holding_since is not None else last
            timeout = max(0.0, since + self.idle_timeout_s - time.monotonic())
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
            except TimeoutError:
                return await self._ended(deframer, timed_out=True)
            if not data:
                return await self._ended(deframer, timed_out=False)
            last = time.monotonic()
            self.busy = True
            try:
                events = deframer.feed(data)
                for event in events:
                    await self._event(event)
            finally:
                self.busy = False
            if not deframer.holding:
                holding_since = None
            elif events or holding_since is None:
                holding_since = last
        return "closed after the gateway's stop"

    async def _event(self, event: Event) -> None:
        received = time.perf_counter()
        h = self.handler
        if isinstance(event, Frame):
            answer = await h.message(event.data)
        elif isinstance(event, Oversize):
            answer = await h.fault("too_large", event.head, event.size, answer=True)
        elif isinstance(event, Unframed):
            kind = "missing_start_block" if event.ended else "outside_block"
            answer = await h.fault(kind, event.head, event.size, answer=event.ended)
        else:
            assert isinstance(event, Aborted)
            answer = await h.fault("block_interrupted", event.head, event.size, answer=False)
        await self._reply(answer, received)

    async def _ended(self, deframer: Deframer, timed_out: bool) -> str:
        pending = deframer.pending()
        if pending is None:
            return f"idle for {self.idle_timeout_s:g}s, closed" if timed_out else "closed by peer"
        if pending.in_block:
            kind = "timed_out_mid_frame" if timed_out else "closed_mid_frame"
        else:
            kind = "outside_block"
        # After a timeout the sender may still wait for an answer; after a close nobody does.
        self.busy = True
        try:
            answer = await self.handler.fault(kind, pending.head, pending.size, answer=timed_out)
            await self._reply(answer, time.perf_counter())
        finally:
            self.busy = False
        return f"{kind.replace('_', ' ')}, closed" if timed_out else f"{kind}, closed by peer"

    async def _reply(self, a: Answer, received: float) -> None:
        what = f"conn={self.cid} {a.type} id={shown(a.control_id) if a.control_id else '-'}"
        if a.ack is None or a.code is None:
            log.warning("%s framing fault, no answer due: %s", what, a.reason)
            return
        self.writer.write(mllp_frame(a.ack))
        elapsed = time.perf_counter() - received
        self.metrics.messages.labels(type=a.type, ack=a.code).inc()
        self.metrics.ack_seconds.labels(ack=a.code).observe(elapsed)
        if a.code == "AA":
            log.debug("%s AA %.1fms", what, elapsed * 1000)
        elif a.code == "AE":
            log.info("%s AE %s", what, a.reason)
        else:
            log.warning("%s AR %s", what, a.reason)
        # A sender that does not read its ACKs must not hold the connection forever.
        await asyncio.wait_for(self.writer.drain(), self.idle_timeout_s)
