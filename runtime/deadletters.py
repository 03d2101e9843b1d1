"""Fitting a dead letter to its topic's record limit: one behaviour for every dead-letter topic.

A dead letter carries the rejected record's original bytes (base64) so it can be replayed after
a fix. When the letter would not fit the topic's limit (`max.message.bytes`, read from the
broker at start), what does not fit is left out, keeping the value (what a replay needs) before
the key: first the key's base64 copy, then the record key, then the value. `detail` says what
was left out; where the record came from is always kept. Should the broker still refuse a
letter as too large (its limit lowered while the worker runs), the publisher sends the smallest
form instead of retrying the same bytes forever.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from runtime.settings import FRAMING_BYTES

__all__ = ["FRAMING_BYTES", "Fitted", "Render", "fit", "with_notes"]

#: Renders the letter from the base64 copies it may carry and the notes on what was left out.
Render = Callable[[str | None, str | None, list[str]], bytes]


@dataclass(frozen=True, slots=True)
class Fitted:
    #: The record key to publish the letter under (None when it had to be left out).
    key: bytes | None
    letter: bytes
    #: The smallest form (no key, no copies): what is sent if the broker refuses `letter`.
    smallest: bytes


def fit(
    limit: int,
    key: bytes | None,
    value: bytes | None,
    render: Render,
    *,
    key_copy: bool,
    value_size: int | None = None,
) -> Fitted:
    """The largest form of the letter, in the order above, that fits `limit` bytes (record key
    included). `key_copy`: the letter's schema has a `key_b64` field; `value_size`: the
    original's size when `value` is only its head (the notes name the original's size)."""
    budget = limit - FRAMING_BYTES
    key_b64 = base64.b64encode(key).decode() if key is not None and key_copy else None
    value_b64 = base64.b64encode(value).decode() if value is not None else None
    size = value_size if value_size is not None else len(value or b"")
    no_value = (
        f"original value of {size} bytes not attached: it does not fit the "
        f"dead-letter topic's {limit}-byte record limit"
    )
    no_key = f"original {len(key or b'')}-byte key left out: it does not fit the topic"
    no_copy = "copy of the key not attached (too large)"
    copy = key_copy and key is not None
    left_out_key = ["published without the original key", no_key]
    options: list[tuple[bytes | None, str | None, str | None, list[str]]] = []
    if copy:
        options.append((key, key_b64, value_b64, []))
    options.append((key, None, value_b64, [no_copy] if copy else []))
    if key is not None:
        options.append((None, None, value_b64, left_out_key))
    if value is not None:
        if copy:
            options.append((key, key_b64, None, [no_value]))
        options.append((key, None, None, [no_value, no_copy] if copy else [no_value]))
        if key is not None:
            options.append((None, None, None, [no_value, *left_out_key]))
    refused = (
        f"original key and value ({len(key or b'')} + {size} bytes) not attached: "
        "the broker refused the letter as too large for the dead-letter topic"
    )
    smallest = render(None, None, [refused])
    for out_key, out_key_b64, out_value_b64, notes in options:
        letter = render(out_key_b64, out_value_b64, notes)
        if len(letter) + len(out_key or b"") <= budget:
            break
    return Fitted(out_key, letter, smallest)  # the last option carries nothing of the record


def with_notes(detail: str, notes: list[str]) -> str:
    return detail + "".join(f" ({note})" for note in notes)
