"""Shared helpers for the episode tests: run visits of one patient through the engine with a
history, as the worker and audit do (seq = position)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from compliance import Engine, Outcome, PatientHistory
from tests.factories import model

NOW = datetime(2026, 12, 31, tzinfo=UTC)


def day(start: date, n: int) -> str:
    """The date n calendar days after `start`, ISO."""
    return (start + timedelta(days=n)).isoformat()


def run(
    engine: Engine, visits: list[dict[str, Any]], history: PatientHistory | None = None
) -> list[Outcome]:
    h = history or PatientHistory()
    out = []
    for seq, data in enumerate(visits, start=1):
        o = engine.evaluate(model(data), NOW, h, seq)
        assert o.history is not None
        h = o.history
        out.append(o)
    return out


def rules(outcome: Outcome) -> list[str]:
    return [a.rule_id for a in outcome.alerts]


def flagged(outcomes: list[Outcome], rule_id: str) -> list[str]:
    """Visit ids with an alert of `rule_id`, in evaluation order."""
    return [o.checked.body["visit_id"] for o in outcomes if rule_id in rules(o)]


def alert(outcome: Outcome, rule_id: str) -> dict[str, Any]:
    [a] = [a for a in outcome.alerts if a.rule_id == rule_id]
    return a.body
