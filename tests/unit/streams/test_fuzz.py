"""Fuzzing decode + validation + rules: no input makes an exception escape the processor; every
record ends as either one VisitChecked (plus its alerts) or exactly one dead letter. Input
hygiene (docs/rules.md): repeated JSON keys found exactly (against texts written with known
repeats), a leading byte-order mark never accepted, patient_ref accepted exactly when opaque,
RENDERING_NPI_INVALID exactly when CMS's check digit fails."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance import Engine
from runtime.settings import Settings
from schemas import Rejection, decode_visit
from schemas.duplicate_keys import duplicate_key_detail
from schemas.visit import TherapyVisitCompleted
from streams.metrics import Metrics
from streams.processor import Record, VisitProcessor, guarded, scratch
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
    out = guarded(PROCESSOR, Record("in", 0, 1, key, value, None), scratch())
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


# --- input hygiene (docs/rules.md "Input hygiene") -------------------------------------------

BOM = b"\xef\xbb\xbf"
KEY_CHARS = st.sampled_from(["a", "b", "units", "cpt", "\u00e9", '"', "\\", ":", " ", "\x01"])


@st.composite
def json_docs(draw: st.DrawFn, depth: int = 0) -> tuple[str, set[str]]:
    """A JSON text written by hand (objects may repeat a key; keys are spelt with random
    escapes and spacing) and, as the oracle, the paths of the keys it repeats."""
    kind = draw(st.sampled_from(["object", "array", "scalar"] if depth < 3 else ["scalar"]))
    if kind == "scalar":
        return draw(st.sampled_from(["1", "-2.5e3", "true", "null", '"x:\\"y\\""', '"{}"'])), set()
    ws = draw(st.sampled_from(["", " ", "\n  "]))
    if kind == "array":
        items = draw(st.lists(json_docs(depth + 1), max_size=3))
        dups = {f"{i}.{p}" for i, (_, ps) in enumerate(items) for p in ps}
        return "[" + ws + ("," + ws).join(t for t, _ in items) + "]", dups
    keys = draw(st.lists(st.lists(KEY_CHARS, max_size=2).map("".join), max_size=4))
    values = [draw(json_docs(depth + 1)) for _ in keys]
    members, dups, seen = [], set(), set()
    for key, (text, inner) in zip(keys, values, strict=True):
        if key in seen:
            dups.add(key)
        seen.add(key)
        dups |= {f"{key}.{p}" for p in inner}
        escape = draw(st.booleans())
        spelt = "".join(f"\\u{ord(c):04x}" if escape or c in '"\\\x01' else c for c in key)
        members.append(f'"{spelt}"{ws}:{ws}{text}')
    return "{" + ws + ("," + ws).join(members) + "}", dups


def shown(path: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in path)


@settings(max_examples=500, deadline=None)
@given(json_docs())
def test_duplicate_keys_found_exactly(doc: tuple[str, set[str]]) -> None:
    text, dups = doc
    detail = duplicate_key_detail(text.encode())
    if not dups:
        assert detail is None
    else:
        assert detail is not None
        assert any(detail.startswith(f"{shown(p)}: duplicate key") for p in dups), (detail, dups)


OBJECTS = ["", "payer.", "rendering_provider.", "services.0.", "documents.0."]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visits(), st.sampled_from(OBJECTS), st.booleans())
def test_valid_visits_with_a_repeated_key_are_dead_lettered(
    data: dict[str, Any], where: str, repeat_last: bool
) -> None:
    data = copy.deepcopy(data)
    data["services"] = data["services"] or [line("1", "97110", 1, 15)]
    data["documents"] = [{"doc_id": "D", "kind": "daily_note"}]
    obj: dict[str, Any] = data
    for part in where.split(".")[:-1]:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    key = list(obj)[-1 if repeat_last else 0]
    # Repeat the key in the text: the encoder never writes a duplicate, so rename a marker.
    obj["\x00dup"] = obj[key]
    value = orjson.dumps(data).replace(b'"\\u0000dup"', orjson.dumps(key))
    out = guarded(
        PROCESSOR, Record("in", 0, 1, data["patient_ref"].encode(), value, None), scratch()
    )
    assert [o.topic for o in out] == [PROCESSOR.settings.topic_deadletter]
    letter = orjson.loads(out[0].value)
    assert letter["reason"] == "schema_violation"
    assert letter["detail"].startswith(f"{where}{key}: duplicate key")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), visits().map(orjson.dumps)))
def test_a_leading_bom_is_never_accepted_and_always_named(value: bytes) -> None:
    result = decode_visit(BOM + value)
    assert isinstance(result, Rejection)
    assert result.reason.value == "invalid_json"
    assert "UTF-8 byte-order mark" in result.detail
    assert_one_outcome(b"P-88f1", BOM + value)


def opaque_by_the_contract(ref: str) -> bool:
    """EVENTS.md opaque reference, with the default pattern: 1-128 printable ASCII, no space."""
    return 1 <= len(ref) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in ref)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visits(), st.text(st.characters(max_codepoint=0x24F), max_size=140))
def test_patient_ref_accepted_exactly_when_opaque(data: dict[str, Any], ref: str) -> None:
    data = dict(data, patient_ref=ref)
    result = decode_visit(orjson.dumps(data))
    if isinstance(result, Rejection) and result.patient_ref is None:
        return  # refused for another field first (the random visit's own shape)
    assert isinstance(result, TherapyVisitCompleted) == opaque_by_the_contract(ref)
    if not opaque_by_the_contract(ref):
        assert isinstance(result, Rejection) and result.patient_ref is not None
        if " " in ref and all(0x20 <= ord(c) <= 0x7E for c in ref) and 0 < len(ref) <= 128:
            assert result.patient_ref.value == "space"


def npi_ok(npi: str) -> bool:
    """Oracle: CMS's formulation without the prefix (double alternate digits from the right of
    the first nine, add their digits, the others and the constant 24; the check digit brings
    the total to a multiple of ten)."""
    total = 24
    for pos, ch in enumerate(reversed(npi[:9])):
        total += sum(map(int, str(int(ch) * 2))) if pos % 2 == 0 else int(ch)
    return (total + int(npi[9])) % 10 == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visits(), st.text("0123456789", min_size=10, max_size=10))
def test_rendering_npi_alert_exactly_when_the_check_digit_fails(
    data: dict[str, Any], npi: str
) -> None:
    data = dict(data, rendering_provider={"npi": npi, "credential": "PT"})
    visit = decode_visit(orjson.dumps(data))
    if isinstance(visit, Rejection):
        return
    billed = any(s["units"] > 0 for s in data["services"])
    rules = {f.rule_id.value for f in ENGINE.check(visit)}
    assert ("RENDERING_NPI_INVALID" in rules) == (billed and not npi_ok(npi))
