"""Alert ids are stable across releases (EVENTS.md: the same event, rule and lines always give
the same id, so billing can de-duplicate). The oracle is ids RECORDED from the engine before any
change to the derivation (tests/fixtures/alert_ids/record.py, committed with its output), not
ids computed by the code under test."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from compliance.alerts import alert_id

_RECORDED = Path(__file__).parents[1] / "fixtures" / "alert_ids" / "recorded.json"
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
