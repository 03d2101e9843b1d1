"""MLLP deframing, sans I/O: bytes in as they arrive, complete blocks and framing faults out.

Block = <SB> data <EB><CR> with SB 0x0B, EB 0x1C (HL7 Transport Specification: MLLP Release 2,
sec. 4.2 "Block Format"; ehr_ncci.md 3.1). The data may contain only bytes >= 0x20 and CR, so an
SB or EB inside a block can only be a framing fault, and the next SB is a safe place to
resynchronise.

Why not python-hl7's `hl7.mllp` reader (`readblock()`): it reads up to <EB><CR> and only then
checks the first byte, so bytes before a start block cost the message that follows them too
(InvalidBlockError carries neither); over its `limit` it clears the buffer, losing the head we
need to name MSH-10 and to dead-letter; and a new SB inside an open block is returned as part of
the message. This decoder keeps what it needs for each case and never holds more than
`max_bytes` of one block.
"""

from __future__ import annotations

from dataclasses import dataclass

SB, EB, CR = 0x0B, 0x1C, 0x0D
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete block within the size limit: the message, unframed, as received."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    """A complete block over the limit: its first `len(head)` bytes and its full size."""

    head: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Unframed:
    """Bytes outside any block. `ended`: they were closed by an <EB> without an <SB> (a message
    sent without its start byte, whose sender waits for an answer); otherwise they preceded a
    start block and nobody waits for an answer to them."""

    head: bytes
    size: int
    ended: bool


@dataclass(frozen=True, slots=True)
class Aborted:
    """A block cut short by a new <SB> before its <EB> (the sender gave up on it)."""

    head: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Pending:
    """What is left when the connection closes or times out: an open block (`in_block`) or
    stray bytes outside one."""

    head: bytes
    size: int
    in_block: bool


Event = Frame | Oversize | Unframed | Aborted


class Deframer:
    """Incremental MLLP decoder. Keeps at most `max_bytes` of the current block or stray run."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._size = 0
        self._in_block = False
        self._meaningful = False  # stray bytes other than whitespace seen
        self._skip_cr = False

    @property
    def in_block(self) -> bool:
        return self._in_block

    @property
    def holding(self) -> bool:
        """An open block or meaningful stray bytes wait for more input (cheap `pending()`)."""
        return self._in_block or self._meaningful

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        pos, n = 0, len(data)
        while pos < n:
            if self._skip_cr:
                self._skip_cr = False
                if data[pos] == CR:
                    pos += 1
                    continue
            sb, eb = data.find(SB, pos), data.find(EB, pos)
            if eb != -1 and (sb == -1 or eb < sb):
                self._take(data, pos, eb)
                event = self._close_block() if self._in_block else self._close_stray(ended=True)
                if event is not None:
                    events.append(event)
                self._in_block = False
                pos, self._skip_cr = eb + 1, True
            elif sb != -1:
                self._take(data, pos, sb)
                if self._in_block:
                    events.append(Aborted(bytes(self._buf), self._size))
                    self._reset()
                else:
                    event = self._close_stray(ended=False)
                    if event is not None:
                        events.append(event)
                self._in_block = True
                pos = sb + 1
            else:
                self._take(data, pos, n)
                pos = n
        return events

    def pending(self) -> Pending | None:
        """The unfinished block (even an empty one after <SB>) or meaningful stray bytes."""
        if self.holding:
            return Pending(bytes(self._buf), self._size, self._in_block)
        return None

    def _take(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        room = self.max_bytes - len(self._buf)
        if room > 0:
            self._buf += data[start : min(end, start + room)]
        self._size += end - start
        if not self._in_block and not self._meaningful:
            self._meaningful = bool(data[start:end].strip(_WHITESPACE))

    def _close_block(self) -> Event:
        head, size = bytes(self._buf), self._size
        self._reset()
        return Frame(head) if size <= self.max_bytes else Oversize(head, size)

    def _close_stray(self, ended: bool) -> Unframed | None:
        # Whitespace between blocks (a CR LF some senders add after <EB><CR>) is not a fault.
        event = Unframed(bytes(self._buf), self._size, ended) if self._meaningful else None
        self._reset()
        return event

    def _reset(self) -> None:
        self._buf.clear()
        self._size = 0
        self._meaningful = False
