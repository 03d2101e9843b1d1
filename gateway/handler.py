"""What the MLLP gateway does with one message or framing fault: parse, write to Kafka, answer.

ACK policy (original mode, HL7 v2.5 ch. 2.9.2; MSA-1 values from table 0008; ERR-3 from table
0357; docs/integration-hl7.md "Rejections and ACKs"):
- a part (ChargePart / DocumentationPart): the raw bytes go to the inbound topic, keyed by
  patient_ref; **AA only once the broker acknowledged the write** (acks=all). Not acknowledged
  within TC_MLLP_ACK_TIMEOUT_S, or failed: **AR** (table 0008 AR: rejected for a reason unrelated
  to content or format; the sender resends), ERR-3 207 "Application internal error".
- a rejection: an EhrDeadLetter, then **AE** (MSA-3 `<reason>: <problem>`, one ERR per problem).
  HL7 ch. 2.9.2.2 would have the protocol layer answer AR for an unacceptable MSH-9 or MSH-12;
  we answer AE for those too, because engines (Mirth, Rhapsody) resend on AR and a message of an
  unsupported type would block the sender's queue forever.
- a dead letter that cannot be written: AR (nothing stored; the sender resends).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from ehr import (
    EhrConfig,
    MessageHeader,
    Problem,
    Rejection,
    RejectReason,
    build_ack,
    parse_hl7v2_parts,
    read_header,
    rejection_ack,
)
from ehr.ack import AckCode
from gateway.deadletters import dead_letter
from gateway.metrics import GatewayMetrics, type_label
from runtime.settings import GatewaySettings
from schemas.decode import UTF8_BOM

log = logging.getLogger(__name__)


class Sink(Protocol):
    """The part of AIOKafkaProducer the gateway uses: `send` returns the delivery future."""

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """An ACK to write (None: nobody waits for one), and what to log about it."""

    ack: bytes | None
    code: AckCode | None
    type: str
    control_id: str
    reason: str = ""


class Health:
    """Whether writes to the broker succeed: the gateway's /health."""

    def __init__(self) -> None:
        self.last_stored: float | None = None
        self.failing_since: float | None = None

    def stored(self) -> None:
        self.last_stored, self.failing_since = time.time(), None

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = time.time()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    # A delivery that completes after we gave up on it must not log "exception never retrieved".
    if not fut.cancelled():
        fut.exception()


class MessageHandler:
    def __init__(
        self,
        settings: GatewaySettings,
        config: EhrConfig,
        sink: Sink,
        metrics: GatewayMetrics,
        *,
        clock: Callable[[], datetime] = _utcnow,
        max_bytes: int | None = None,
        deadletter_limit: int | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.topic_inbound = settings.topic_hl7_inbound
        self.topic_deadletter = settings.topic_ehr_deadletter
        self.ack_timeout_s = settings.mllp_ack_timeout_s
        #: Largest message (gateway/server.py may lower it to what the inbound topic accepts).
        self.max_bytes = max_bytes or settings.mllp_max_bytes
        self.deadletter_limit = deadletter_limit or settings.deadletter_max_bytes
        self.health = Health()

    # ---- messages --------------------------------------------------------------------------

    async def message(self, raw: bytes) -> Answer:
        header = self.header(raw)
        try:
            result = parse_hl7v2_parts(raw, self.config)
        except Exception as exc:  # a parser bug must not take the connection down
            log.error("processing_error while parsing: %s", type(exc).__name__)
            detail = f"unexpected {type(exc).__name__} while parsing the message"
            return await self._reject(raw, len(raw), header, "processing_error", detail, None)
        if isinstance(result, Rejection):
            return await self._reject(
                raw, len(raw), header, result.reason.value, result.detail, result
            )
        # Every part of one message names the same patient (PID-3): one key.
        error = await self._write(self.topic_inbound, raw, result[0].patient_ref.encode())
        if error is not None:
            # AR (table 0008: rejected for a reason unrelated to content or format, e.g. system
            # down, HL7 v2.5 ch. 2.9.2.2): nothing stored, the sender resends; ERR-3 207.
            return self._answer(
                header, "AR", f"not stored, resend: {error}", f"not stored: {error}"
            )
        # AA (table 0008 "application accept") only now: the broker acknowledged the write.
        return self._answer(header, "AA", "", "")

    async def fault(self, event: str, head: bytes, size: int, answer: bool) -> Answer:
        """A framing fault (gateway/framing.py): dead-letter what was received and, when the
        sender waits for one, answer AE (header-less when MSH-10 cannot be read)."""
        self.metrics.framing_errors.labels(event=event).inc()
        reason = "too_large" if event == "too_large" else "bad_framing"
        header = self.header(head) if _msh_first(head) else None
        detail = _FAULT_DETAIL[event](size, self.max_bytes)
        return await self._reject(head, size, header, reason, detail, None, answer, event)

    def header(self, raw: bytes) -> MessageHeader | None:
        """MSH of the message, for addressing the ACK. Read from the MSH segment alone: parsing
        the whole message again would cost as much as the profile's parse (~0.7 ms). A UTF-8
        byte-order mark before MSH is skipped here only: the message is still refused for it
        (ehr.parse_hl7v2), but the AE can echo MSH-10 and answer MSH-3/4."""
        msh = _SEGMENT_END.split(_without_bom(raw), 1)[0]
        try:
            h = read_header(msh, self.config.profile.default_charset, self.config.profile.zone)
        except Exception:  # the header only addresses the ACK; without it the ACK is header-less
            return None
        return None if isinstance(h, Rejection) else h

    # ---- internals -------------------------------------------------------------------------

    async def _reject(
        self,
        value: bytes,
        size: int,
        header: MessageHeader | None,
        reason: str,
        detail: str,
        rejection: Rejection | None,
        answer: bool = True,
        event: str = "",
    ) -> Answer:
        why = f"{reason} ({event})" if event else reason
        try:
            fitted = dead_letter(
                reason=reason,
                detail=detail,
                value=value,
                original_size=size,
                control_id=header.control_id if header else None,
                now=self.clock(),
                limit=self.deadletter_limit,
            )
        except Exception as exc:  # a bug here must cost an AR (resend), never the connection
            log.error("cannot build the dead letter (%s): %s", why, type(exc).__name__)
            error: str | None = f"dead letter not built ({type(exc).__name__})"
        else:
            error = await self._write(self.topic_deadletter, fitted.letter, None)
            if error == TOO_LARGE and fitted.smallest != fitted.letter:
                # The topic's limit was lowered since start: the smallest form, as the worker
                # does (runtime/deadletters.py), rather than ARs the sender would resend forever.
                self.metrics.dead_letters_shrunk.inc()
                error = await self._write(self.topic_deadletter, fitted.smallest, None)
        if error is not None:
            # Not even the dead letter is stored: AR (resend) rather than AE, which would tell
            # the sender to drop a message we do not have.
            self.metrics.dead_letter_failures.inc()
            if not answer:
                return self._silent(header, f"{why}; dead letter NOT written: {error}")
            text = f"not stored, resend: dead letter not written: {error}"
            return self._answer(header, "AR", text, f"{why}; dead letter not written: {error}")
        self.metrics.dead_letters.labels(reason=reason).inc()
        if not answer:
            return self._silent(header, why)
        if rejection is not None:
            # AE (table 0008 "application error"): MSA-3 the reason, one ERR per problem with
            # ERR-2 location and ERR-3 from table 0357 (HL7 v2.5 ch. 2.15.5), via ehr.ack.
            ack = rejection_ack(header, rejection, control_id=_ack_id(), now=self.clock())
            return Answer(ack, "AE", _type(header), _cid(header), why)
        # Framing faults: ERR-3 100 (the block as received is not a complete message) with the
        # detail in ERR-8; a parser failure: ERR-3 207 "Application internal error".
        problems = [] if reason == "processing_error" else [Problem(reason=_NOT_HL7, detail=detail)]
        ack = build_ack(
            header,
            "AE",
            control_id=_ack_id(),
            now=self.clock(),
            text=f"{reason}: {detail}",
            problems=problems,
        )
        return Answer(ack, "AE", _type(header), _cid(header), why)

    def _answer(self, header: MessageHeader | None, code: AckCode, text: str, why: str) -> Answer:
        ack = build_ack(header, code, control_id=_ack_id(), now=self.clock(), text=text)
        return Answer(ack, code, _type(header), _cid(header), why)

    @staticmethod
    def _silent(header: MessageHeader | None, why: str) -> Answer:
        return Answer(None, None, _type(header), _cid(header), why)

    async def _write(self, topic: str, value: bytes, key: bytes | None) -> str | None:
        """None once the broker acknowledged the record; else why not (no payload in it)."""
        try:
            await asyncio.wait_for(self._send(topic, value, key), self.ack_timeout_s)
        except TimeoutError:
            error = f"broker did not acknowledge within {self.ack_timeout_s:g}s"
        except (MessageSizeTooLargeError, RecordTooLargeError):
            error = TOO_LARGE
        except Exception as exc:
            error = f"broker write failed ({type(exc).__name__})"
        else:
            self.health.stored()
            self.metrics.last_stored.set_to_current_time()
            return None
        self.health.failed()
        return error

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        # Cancelling send() (on timeout) keeps the record out of the producer; once it returned,
        # the record is queued and the delivery future is awaited through a shield.
        fut = await self.sink.send(topic, value, key=key)
        fut.add_done_callback(_retrieve)
        await asyncio.shield(fut)


_NOT_HL7 = RejectReason.NOT_HL7
#: What `_write` says when the record is over the topic's (or the producer's) limit.
TOO_LARGE = "record too large for the topic"
_SEGMENT_END = re.compile(rb"[\r\n]")


def _without_bom(raw: bytes) -> bytes:
    """The message from its first segment on: leading line breaks/spaces and one UTF-8 BOM
    (docs/rules.md "Input hygiene") dropped, for reading the header that addresses the ACK."""
    return raw.lstrip(b"\r\n \t").removeprefix(UTF8_BOM)


def _msh_first(head: bytes) -> bool:
    return head.removeprefix(UTF8_BOM).startswith(b"MSH")


_FAULT_DETAIL: dict[str, Callable[[int, int], str]] = {
    "outside_block": lambda n, _m: f"{n} bytes outside an MLLP block (no start byte 0x0B)",
    "missing_start_block": lambda n, _m: (
        f"a block of {n} bytes ended with 0x1C but had no start byte 0x0B"
    ),
    "block_interrupted": lambda n, _m: (
        f"a block was interrupted after {n} bytes by a new start byte 0x0B"
    ),
    "too_large": lambda n, m: (
        f"message of {n} bytes is over the gateway's limit of {m} bytes (TC_MLLP_MAX_BYTES)"
    ),
    "closed_mid_frame": lambda n, _m: (
        f"connection closed after {n} bytes of a block, before its end bytes 0x1C 0x0D"
    ),
    "timed_out_mid_frame": lambda n, _m: (
        f"a block of {n} bytes was not ended within TC_MLLP_IDLE_TIMEOUT_S"
    ),
}


def _ack_id() -> str:
    # MSH-10 of our ACK: unique, and within ST's 20 characters (HL7 v2.5.1 MSH-10).
    return uuid.uuid4().hex[:20]


def _type(header: MessageHeader | None) -> str:
    return type_label(header.message_code, header.trigger_event) if header else "unknown"


def _cid(header: MessageHeader | None) -> str:
    return header.control_id if header else ""
