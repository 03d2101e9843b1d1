"""The MLLP decoder alone (gateway/framing.py): block = 0x0B data 0x1C 0x0D (HL7 MLLP
Release 2, sec. 4.2), whatever the reads look like, and every framing fault it must report."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.framing import Aborted, Deframer, Event, Frame, Oversize, Pending, Unframed

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
MSG_A = b"MSH|^~\\&|A|F|B|G|20260302160000||DFT^P03^DFT_P03|A1|P|2.5.1\rEVN|P03\r"
MSG_B = b"MSH|^~\\&|A|F|B|G|20260302160000||MDM^T02^MDM_T02|B2|P|2.5.1\rEVN|T02\r"


def frame(msg: bytes) -> bytes:
    return SB + msg + EB + CR


def feed_all(chunks: list[bytes], max_bytes: int = 4096) -> tuple[list[Event], Pending | None]:
    d = Deframer(max_bytes)
    events = [e for c in chunks for e in d.feed(c)]
    return events, d.pending()


def test_one_block_in_one_read() -> None:
    assert feed_all([frame(MSG_A)]) == ([Frame(MSG_A)], None)


def test_a_block_split_across_reads_byte_by_byte() -> None:
    data = frame(MSG_A) + frame(MSG_B)
    events, pending = feed_all([data[i : i + 1] for i in range(len(data))])
    assert events == [Frame(MSG_A), Frame(MSG_B)] and pending is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=6))
def test_any_split_gives_the_same_blocks(cuts: list[int]) -> None:
    data = frame(MSG_A) + frame(MSG_B) + frame(MSG_A)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert feed_all(chunks) == ([Frame(MSG_A), Frame(MSG_B), Frame(MSG_A)], None)


def test_several_blocks_in_one_read_and_whitespace_between_them_is_not_a_fault() -> None:
    events, pending = feed_all([frame(MSG_A) + b"\r\n" + frame(MSG_B) + b"\n"])
    assert events == [Frame(MSG_A), Frame(MSG_B)] and pending is None


def test_bytes_before_a_start_block_are_reported_and_the_block_still_read() -> None:
    events, _ = feed_all([b"garbage" + frame(MSG_A)])
    assert events == [Unframed(b"garbage", 7, ended=False), Frame(MSG_A)]


def test_a_message_without_its_start_byte_is_answerable() -> None:
    # Ended by <EB><CR>: the sender thinks it sent a block and waits for an answer.
    events, _ = feed_all([MSG_A + EB + CR + frame(MSG_B)])
    assert events == [Unframed(MSG_A, len(MSG_A), ended=True), Frame(MSG_B)]


def test_a_new_start_block_interrupts_an_open_one() -> None:
    events, _ = feed_all([SB + b"MSH|partial", frame(MSG_B)])
    assert events == [Aborted(b"MSH|partial", 11), Frame(MSG_B)]


def test_missing_end_block_leaves_the_block_pending() -> None:
    events, pending = feed_all([SB + MSG_A[:20]])
    assert events == [] and pending == Pending(MSG_A[:20], 20, in_block=True)
    assert feed_all([SB])[1] == Pending(b"", 0, in_block=True)


def test_stray_bytes_alone_are_pending_outside_a_block() -> None:
    assert feed_all([b"hello"])[1] == Pending(b"hello", 5, in_block=False)
    assert feed_all([b"\r\n \t"])[1] is None


def test_oversize_block_keeps_only_the_head_and_counts_the_rest() -> None:
    big = b"MSH|" + b"x" * 5000
    events, pending = feed_all([SB + big[:3000], big[3000:] + EB + CR + frame(MSG_A)], 1024)
    assert events == [Oversize(big[:1024], len(big)), Frame(MSG_A)] and pending is None


def test_exactly_the_limit_is_not_oversize() -> None:
    msg = b"M" * 1024
    assert feed_all([frame(msg)], 1024)[0] == [Frame(msg)]
    assert feed_all([frame(msg + b"M")], 1024)[0] == [Oversize(msg, 1025)]


def test_end_block_without_cr_still_ends_the_block() -> None:
    # Lenient: 0x1C cannot occur inside HL7 data, so it ends the block even without its CR.
    assert feed_all([SB + MSG_A + EB + frame(MSG_B)])[0] == [Frame(MSG_A), Frame(MSG_B)]


def test_empty_block() -> None:
    assert feed_all([SB + EB + CR])[0] == [Frame(b"")]
