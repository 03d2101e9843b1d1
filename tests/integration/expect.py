"""Ground truth for stream tests: what the worker must publish for a list of input records,
computed with the same core the worker uses (alert ids are deterministic), keeping each
patient's history across the records in production order, as `audit` does: per patient that
is the worker's partition order, so the history-dependent rules see the same visits."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from compliance import Engine, PatientHistory
from schemas import Rejection, decode_visit

_ENGINE = Engine()


@dataclass
class Expected:
    checked_events: set[str] = field(default_factory=set)
    alert_ids: set[str] = field(default_factory=set)
    dead_values: list[bytes] = field(default_factory=list)


def expected_outputs(records: Iterable[tuple[bytes | None, bytes]]) -> Expected:
    exp = Expected()
    now = datetime.now(UTC)
    histories: dict[str, PatientHistory] = {}
    for seq, (key, value) in enumerate(records):
        result = decode_visit(value)
        if isinstance(result, Rejection) or not key or key != result.patient_ref.encode():
            exp.dead_values.append(value)
            continue
        exp.checked_events.add(result.event_id)
        history = histories.get(result.patient_ref, PatientHistory())
        outcome = _ENGINE.evaluate(result, now, history, seq=seq)
        assert outcome.history is not None
        histories[result.patient_ref] = outcome.history
        # The visit's alerts, and those its re-judgement raised on the patient's other visits
        # (EVENTS.md "VisitStatus v1": published on the alert topic like any other).
        exp.alert_ids |= {a.alert_id for a in (*outcome.alerts, *outcome.raised)}
    return exp


def dead_value(letter: dict[str, object]) -> bytes:
    return base64.b64decode(str(letter["value_b64"]))
