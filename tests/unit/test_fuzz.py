"""Fuzzing decode + validation + rules: no input makes an exception escape the processor; every
record ends as either one VisitChecked (plus its alerts) or exactly one dead letter."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance import Engine
from schemas import Rejection, decode_visit
from streams.metrics import Metrics
from streams.processor import Record, VisitProcessor
from streams.settings import Settings
from tests.factories import line, timed_visit

PROCESSOR = VisitProcessor(
    Settings.from_env({}), Metrics(), clock=lambda: datetime(2026, 3, 2, tzinfo=UTC)
)
ENGINE = Engine()
CODES = [
    "97110",
    "97112",
    "97140",
    "97530",
    "97750",
    "97161",
    "97010",
    "97039",
    "97001",
    "97762",
    "97129",
    "92507",
    "97799",
    "G0283",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)

lines = st.builds(
    lambda i, cpt, units, minutes, mods: line(str(i), cpt, units, minutes, mods),
    st.integers(0, 50),
    st.sampled_from(CODES),
    st.integers(0, 8),
    st.none() | st.integers(0, 120),
    st.lists(st.sampled_from(["GP", "GO", "GN", "59", "KX"]), max_size=3),
)


@st.composite
def visits(draw: st.DrawFn) -> dict[str, Any]:
    data = timed_visit(("97110", 2, 30))
    data["services"] = draw(st.lists(lines, max_size=8, unique_by=lambda x: x["line_id"]))
    data["total_timed_minutes"] = draw(st.none() | st.integers(0, 200))
    data["total_treatment_minutes"] = draw(st.none() | st.integers(0, 240))
    data["discipline"] = draw(st.sampled_from(["PT", "OT", "SLP"]))
    data["payer"] = {
        "payer_id": "X",
        "kind": draw(
            st.sampled_from(
                [
                    "medicare",
                    "medicare_advantage",
                    "medicaid",
                    "commercial",
                    "workers_comp",
                    "other",
                ]
            )
        ),
    }
    if draw(st.booleans()):
        data["payer"]["unit_rule"] = draw(st.sampled_from(["cms_8_minute", "ama_midpoint"]))
    dos = draw(
        st.dates(min_value=datetime(2014, 1, 1).date(), max_value=datetime(2026, 12, 31).date())
    )
    data["date_of_service"] = dos.isoformat()
    data["occurred_at"] = f"{dos.isoformat()}T23:00:00Z"
    if draw(st.booleans()):
        data["documents"] = [
            {
                "doc_id": "D",
                "kind": "written_report",
                "cpt": "97750",
                "signed_at": draw(st.none() | st.just("2026-03-02T16:00:00Z")),
            }
        ]
    return data


def assert_one_outcome(key: bytes | None, value: bytes) -> None:
    out = PROCESSOR.handle(Record("in", 0, 1, key, value, None))
    topics = [o.topic for o in out]
    if topics[-1] == PROCESSOR.settings.topic_deadletter:
        assert len(out) == 1
        assert orjson.loads(out[0].value)["reason"] != "processing_error", "a bug, not bad input"
    else:
        assert topics[-1] == PROCESSOR.settings.topic_checked
        assert set(topics[:-1]) <= {PROCESSOR.settings.topic_alerts}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(value: bytes) -> None:
    decode_visit(value)  # never raises, whatever the bytes
    assert_one_outcome(b"P-88f1", value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json(value: Any) -> None:
    assert_one_outcome(b"P-88f1", orjson.dumps(value))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visits())
def test_random_valid_shaped_visits_run_every_rule(data: dict[str, Any]) -> None:
    visit = decode_visit(orjson.dumps(data))
    if isinstance(visit, Rejection):
        return
    outcome = ENGINE.evaluate(visit, datetime(2026, 3, 2, tzinfo=UTC))
    for alert in outcome.alerts:
        alert.model()  # valid under the strict contract
    outcome.checked.model()
    assert_one_outcome(data["patient_ref"].encode(), orjson.dumps(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    visits(),
    st.sampled_from(
        [
            "schema_version",
            "services",
            "payer",
            "discipline",
            "total_timed_minutes",
            "documents",
            "date_of_service",
        ]
    ),
    json_values,
)
def test_valid_visits_with_one_field_replaced_by_junk(
    data: dict[str, Any], field: str, junk: Any
) -> None:
    data = copy.deepcopy(data)
    data[field] = junk
    assert_one_outcome(b"P-88f1", orjson.dumps(data))
