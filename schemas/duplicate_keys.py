"""Duplicate keys in a JSON object (`{"units": 4, "units": 1}`): where, or None. Pure.

RFC 8259 sec. 4 says names within an object SHOULD be unique and that with duplicates "the
behavior of software that receives such an object is unpredictable": some parsers keep the last
value (pydantic, orjson, Python's json), others the first or fail. A record two parsers of one
pipeline read differently is a known smuggling pattern (the validator sees `"units": 1`, a later
consumer bills 4), so the decoder rejects it.

Neither pydantic's parser nor orjson reports duplicates, and a full parse that does (Python's
json with `object_pairs_hook`) would add ~60% to validation on every valid record
(bench/RESULTS.md, "Input hygiene"). So the check proves absence cheaply first:

- In a JSON text without a backslash every `"` delimits a string (keys and string values),
  so the text holds `count('"') / 2` strings.
- orjson parses it (keys deduplicated, last value wins, as every parser here) and re-encodes
  the result: without escapes in the input no string can gain or lose a `"`, so the output holds
  exactly the strings that survived. Parsing only ever drops strings, and only when a key is
  repeated (the repeated key itself, and strings of the value it overwrote).
- Equal counts therefore prove there is no duplicate key, at any depth.

Anything else (a backslash, which escapes could use to spell a key twice differently; a text
orjson refuses; unequal counts) takes the exact path: Python's json with an `object_pairs_hook`
that keeps every pair, walked for the first duplicate. Only that path names the key.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: A key name is shown at most this long, printable ASCII only (a producer that put data into
#: key names must not get it copied into dead letters and logs).
_MAX_KEY_SHOWN = 64


class _Object(list[tuple[str, Any]]):
    """An object's pairs in document order, duplicates kept (the exact path's parse result)."""


def duplicate_key_detail(raw: bytes) -> str | None:
    """A dead-letter detail naming the path of the first duplicate key (`services.0.units`),
    or None when the JSON text has none. `raw` is a text the validator already accepted."""
    if b"\\" not in raw:
        try:
            reencoded = orjson.dumps(orjson.loads(raw))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass  # the exact path decides
        else:
            if raw.count(b'"') == reencoded.count(b'"'):
                return None
    try:
        # Depth is bounded by the validator's own nesting limit (~200) before this runs.
        path = _walk(json.loads(raw, object_pairs_hook=_Object), ())
    except (ValueError, RecursionError):
        # A text the validator accepted and this parser refuses: two parsers disagreeing is the
        # very risk, so it is rejected rather than passed.
        return "a second JSON parser refuses the record, so duplicate keys cannot be ruled out"
    if path is None:
        return None
    return (
        f"{path}: duplicate key (an object names it twice; parsers disagree on which value "
        "wins, RFC 8259 sec. 4)"
    )


def _walk(node: Any, path: tuple[str, ...]) -> str | None:
    if isinstance(node, _Object):
        seen: set[str] = set()
        for key, _value in node:
            if key in seen:
                return ".".join((*path, _shown(key)))
            seen.add(key)
        for key, value in node:
            found = _walk(value, (*path, _shown(key)))
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = _walk(item, (*path, str(i)))
            if found is not None:
                return found
    return None


def _shown(key: str) -> str:
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in key[:_MAX_KEY_SHOWN])
    return printable + ("..." if len(key) > _MAX_KEY_SHOWN else "")
