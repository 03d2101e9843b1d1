"""Alert ids are stable across releases (EVENTS.md: the same event, rule and lines always give
the same id, so billing can de-duplicate). The oracle is ids RECORDED from the engine before any
change to the derivation (tests/fixtures/alert_ids/record.py, committed with its output), not
ids computed by the code under test."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.alerts import ALERT_NAMESPACE, alert_id

_RECORDED = Path(__file__).parents[2] / "fixtures" / "alert_ids" / "recorded.json"
ROWS: list[tuple[str, str, list[str], str]] = [
    (e, r, lines, aid) for e, r, lines, aid in orjson.loads(_RECORDED.read_bytes())["rows"]
]


def test_the_recorded_corpus_is_substantial() -> None:
    assert len(ROWS) >= 250
    assert len({r for _, r, _, _ in ROWS}) >= 15  # most rule ids are represented


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row[3])
def test_alert_id_matches_the_recorded_id(row: tuple[str, str, list[str], str]) -> None:
    event_id, rule_id, line_ids, recorded = row
    assert alert_id(event_id, rule_id, line_ids) == recorded


def test_line_order_does_not_change_the_id() -> None:
    rng = random.Random(5)
    for event_id, rule_id, line_ids, recorded in ROWS:
        shuffled = list(line_ids)
        rng.shuffle(shuffled)
        assert alert_id(event_id, rule_id, shuffled) == recorded
        assert alert_id(event_id, rule_id, tuple(shuffled)) == recorded
        assert alert_id(event_id, rule_id, iter(shuffled)) == recorded


_REF = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@given(_REF, _REF, st.lists(_REF, max_size=6))
def test_alert_id_is_the_uuid5_of_the_documented_key(
    event_id: str, rule_id: str, line_ids: list[str]
) -> None:
    """The standard library's uuid5 over the key EVENTS.md documents is the oracle."""
    key = "\x1f".join((event_id, rule_id, "\x1e".join(sorted(line_ids))))
    assert alert_id(event_id, rule_id, line_ids) == str(uuid.uuid5(ALERT_NAMESPACE, key))


def test_the_engine_builds_alerts_with_the_same_ids() -> None:
    from compliance import Engine
    from schemas import Rejection, decode_visit
    from synthetic.visits import generator

    engine, now, seen = Engine(), datetime(2026, 3, 2, tzinfo=UTC), 0
    for rec in generator("visits", seed=3, malformed_share=0.0).records(300):
        visit = decode_visit(rec.value)
        assert not isinstance(visit, Rejection)
        for a in engine.evaluate(visit, now).alerts:
            key = "\x1f".join((visit.event_id, a.rule_id, "\x1e".join(a.body["line_ids"])))
            assert a.alert_id == a.body["alert_id"] == str(uuid.uuid5(ALERT_NAMESPACE, key))
            seen += 1
    assert seen > 50
