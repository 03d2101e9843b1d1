"""One rule for every dead-letter topic (runtime/deadletters.py), as the three programs that
write dead letters apply it: the check stage (`DeadLetter`, with a `key_b64` copy), the EHR
stages and the MLLP gateway (`EhrDeadLetter`). What does not fit the topic's limit is left out,
in this order: the key's base64 copy, the record key, the value; `detail` says what; the letter
then always fits (record key included, 1 KiB kept for Kafka's framing)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from gateway.deadletters import dead_letter as gateway_letter
from runtime.deadletters import FRAMING_BYTES
from runtime.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.ehr_deadletter import EhrDeadLetter
from streams.ehr_stages import EhrDeadLetters
from streams.metrics import Metrics
from streams.processor import Record, VisitProcessor, guarded, scratch

LIMIT = 1_048_576
NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({"TC_EHR_PATIENT_KEY": "unit-test-key-0123456789"})


def letter(program: str, key: bytes, value: bytes) -> tuple[bytes | None, bytes]:
    """(record key, letter bytes) as `program` writes a dead letter for this key and value."""
    if program == "check stage":
        p = VisitProcessor(SETTINGS, Metrics(), clock=lambda: NOW)
        p.deadletter_limit = LIMIT
        [out] = guarded(p, Record("in", 0, 7, key, value, None), scratch())
        return out.key, out.value or b""
    if program == "ehr stages":
        letters = EhrDeadLetters(SETTINGS, Metrics(), lambda: NOW)
        letters.deadletter_limit = LIMIT
        rec = Record(SETTINGS.topic_hl7_inbound, 0, 7, key, value, None)
        out = letters.letter(rec, "hl7v2", "not_hl7", "not an HL7 message", key=key)
        return out.key, out.value or b""
    fitted = gateway_letter(
        reason="not_hl7",
        detail="not an HL7 message",
        value=value,
        original_size=len(value),
        control_id=None,
        now=NOW,
        limit=LIMIT,
    )
    return None, fitted.letter


# key bytes, value bytes -> what is kept: (record key, key_b64 copy, value); None: no such field
CASES = [
    (10, 1_000, (True, True, True)),  # everything fits
    (500_000, 1_000, (True, False, True)),  # the key's base64 copy goes first
    (3_000_000, 1_000, (False, False, True)),  # then the key: the value is kept for replay
    (10, 900_000, (True, True, False)),  # a value too large to attach in base64
    (3_000_000, 900_000, (False, False, False)),  # neither: where it came from remains
]


@pytest.mark.parametrize("program", ["check stage", "ehr stages", "gateway"])
@pytest.mark.parametrize(("key_len", "value_len", "kept"), CASES)
def test_every_dead_letter_fits_and_says_what_it_left_out(
    program: str, key_len: int, value_len: int, kept: tuple[bool, bool, bool]
) -> None:
    key, value = b"K" * key_len, b"{" + b" " * (value_len - 2) + b"}"
    out_key, raw = letter(program, key, value)
    assert len(raw) + len(out_key or b"") <= LIMIT - FRAMING_BYTES
    key_kept, copy_kept, value_kept = kept
    if program == "check stage":
        dl = DeadLetter.model_validate_json(raw)
        assert (out_key is not None, dl.key_b64 is not None) == (key_kept, copy_kept)
        value_b64, detail = dl.value_b64, dl.detail
    else:
        ehr = EhrDeadLetter.model_validate_json(raw)
        value_b64, detail = ehr.value_b64, ehr.detail
        if program == "ehr stages":  # no key copy in this schema; the record key as above
            assert (out_key is not None) == key_kept
        else:
            assert out_key is None  # MLLP has no record key
            value_kept = value_len < 700_000  # the gateway's letter has no key to give up first
    assert (value_b64 is not None) == value_kept
    if value_kept:
        assert base64.b64decode(value_b64 or "") == value
    else:
        assert f"original value of {value_len} bytes not attached" in detail
    if program != "gateway" and not key_kept:
        assert "published without the original key" in detail


@pytest.mark.parametrize(
    ("head", "limit", "attached"), [(4096, LIMIT, True), (900_000, LIMIT, False)]
)
def test_a_message_the_gateway_cut_short_says_so_only_when_attached(
    head: int, limit: int, attached: bool
) -> None:
    """A frame over TC_MLLP_MAX_BYTES: the gateway keeps its head. Attached, the detail says how
    much of the message it is; left out, the detail names the whole message's size."""
    fitted = gateway_letter(
        reason="too_large",
        detail="message over the limit",
        value=b"x" * head,
        original_size=5_000_000,
        control_id=None,
        now=NOW,
        limit=limit,
    )
    dl = EhrDeadLetter.model_validate_json(fitted.letter)
    assert (dl.value_b64 is not None) == attached
    assert (f"value holds the first {head} of 5000000 bytes" in dl.detail) == attached
    assert ("original value of 5000000 bytes not attached" in dl.detail) == (not attached)
