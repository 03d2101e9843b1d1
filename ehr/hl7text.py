"""HL7 v2 bytes: MLLP framing, splitting a file into messages, and MSH-18 character sets.

Pure functions over bytes; nothing here reads a socket or logs.
"""

from __future__ import annotations

import re

from ehr.rejection import Rejection, RejectReason

# MLLP block = <SB> message <EB><CR> (HL7 MLLP Release 2; python-hl7 hl7/mllp/streams.py uses
# the same bytes; ehr_ncci.md 3.1).
SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"

#: HL7 table 0211 (alternate character sets) -> Python codec. Values outside the table that
#: senders commonly write are accepted too. UTF-16/32 are not ASCII-compatible: a receiver could
#: not even find MSH-18 in them, so they are not supported.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR100": "iso8859-1",
    "ISO IR101": "iso8859-2",
    "ISO IR109": "iso8859-3",
    "ISO IR110": "iso8859-4",
    "ISO IR126": "iso8859-7",
    "ISO IR127": "iso8859-6",
    "ISO IR138": "iso8859-8",
    "ISO IR144": "iso8859-5",
    "ISO IR148": "iso8859-9",
    "ISO IR192": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "GB 18030-2000": "gb18030",
    "ISO IR87": "iso2022_jp",
    # Common non-table spellings.
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "ISO-8859-1": "iso8859-1",
    "CP1252": "cp1252",
    "WINDOWS-1252": "cp1252",
}

_SEGMENT_BREAK = re.compile(rb"\r\n|\r|\n")
_BATCH_SEGMENTS = (b"FHS", b"FTS", b"BHS", b"BTS")


def mllp_frame(message: bytes) -> bytes:
    """Wrap one message (or an ACK) for MLLP."""
    return SB + message + EB + CR


def split_messages(data: bytes) -> list[bytes | Rejection]:
    """A file's messages in order. MLLP-framed blocks when the data holds <SB>; otherwise segments
    split on CR, LF or CRLF (one message per line with CR segments, or segments on lines with
    blank lines between messages), a new message at every MSH and after every blank line. Batch envelopes (FHS/BHS/BTS/FTS)
    are dropped. Text that belongs to no message is returned as a `not_hl7` rejection in place."""
    if SB in data:
        return _split_mllp(data)
    return _split_segments(data)


def _split_mllp(data: bytes) -> list[bytes | Rejection]:
    out: list[bytes | Rejection] = []
    pos = 0
    while True:
        start = data.find(SB, pos)
        stray = data[pos : start if start >= 0 else len(data)]
        if stray.strip():
            out.append(Rejection.one(RejectReason.NOT_HL7, "bytes outside an MLLP block"))
        if start < 0:
            return out
        end = data.find(EB, start + 1)
        if end < 0:
            out.append(Rejection.one(RejectReason.NOT_HL7, "MLLP block without an end byte 0x1C"))
            return out
        out.extend(_split_segments(data[start + 1 : end]) or [_empty()])
        pos = end + 1
        if data[pos : pos + 1] == CR:
            pos += 1


def _empty() -> Rejection:
    return Rejection.one(RejectReason.NOT_HL7, "empty MLLP block")


def _split_segments(data: bytes) -> list[bytes | Rejection]:
    out: list[bytes | Rejection] = []
    current: list[bytes] | None = None
    orphans = 0

    def close() -> None:
        nonlocal current, orphans
        if current is not None:
            out.append(b"\r".join(current) + b"\r")
        if orphans:
            out.append(_orphans(orphans))
        current, orphans = None, 0

    for segment in _SEGMENT_BREAK.split(data):
        if not segment.strip():
            close()  # a blank line ends a message
            continue
        stripped = segment.lstrip()
        head = stripped[:3]
        if head in _BATCH_SEGMENTS:
            continue
        if head == b"MSH" or stripped.startswith(_BOM_MSH):
            # A BOM before MSH starts a message too (kept with its BOM, so `parse_hl7v2`
            # refuses it naming the BOM): read as a segment it would be merged, unseen, into
            # the message before it when messages are separated by a single line break.
            close()
            current = [stripped]
        elif current is None:
            orphans += 1
        else:
            current.append(segment)
    close()
    return out


#: A UTF-8 byte-order mark before MSH: what Windows editors write at the start of a file. A
#: file's leading one is skipped by `convert`; any other starts a message that `parse_hl7v2`
#: refuses, naming the BOM (docs/rules.md "Input hygiene").
_BOM_MSH = b"\xef\xbb\xbfMSH"


def _orphans(count: int) -> Rejection:
    return Rejection.one(
        RejectReason.NOT_HL7,
        f"{count} segment(s) before any MSH segment: not an HL7 message",
    )


def declared_charset(raw: bytes) -> str:
    """MSH-18 first repetition, first component, as written ('' when absent). Read from the bytes
    before decoding: the header itself is ASCII in every ASCII-compatible charset."""
    first = _SEGMENT_BREAK.split(raw.lstrip(), maxsplit=1)[0]
    if len(first) < 8 or not first.startswith(b"MSH"):
        return ""
    sep = first[3:4]
    fields = first.split(sep)
    encoding_chars = fields[1] if len(fields) > 1 else b""
    rep = encoding_chars[1:2] or b"~"
    comp = encoding_chars[0:1] or b"^"
    # fields[0] is "MSH" and fields[1] is MSH-2, so MSH-n is fields[n - 1].
    if len(fields) < 18:
        return ""
    value = fields[17].split(rep)[0].split(comp)[0]
    return value.decode("ascii", errors="replace").strip()


def decode_message(raw: bytes, default_charset: str) -> str | Rejection:
    """Bytes -> text per MSH-18 (HL7 v2.5 ch. 2.15.9, table 0211), else the profile's default."""
    name = declared_charset(raw)
    codec = CHARSETS.get(name.upper()) if name else default_charset
    if codec is None:
        return Rejection.one(
            RejectReason.BAD_CHARSET,
            f"MSH-18 {name[:20]!r} is not a supported character set (HL7 table 0211: "
            "ASCII, 8859/1..15, UNICODE UTF-8, ISO IR6/100/192, ...)",
            segment="MSH",
            sequence=1,
            field=18,
        )
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        where = "MSH-18" if name else "the profile's default_charset (MSH-18 is empty)"
        return Rejection.one(
            RejectReason.BAD_CHARSET,
            f"bytes at offset {exc.start} are not valid {codec} as declared by {where}",
            segment="MSH",
            sequence=1,
            field=18,
        )
