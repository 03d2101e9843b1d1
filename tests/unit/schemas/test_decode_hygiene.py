"""Input hygiene in the shared decoder (docs/rules.md "Input hygiene"): byte-order marks and
duplicate JSON keys. Expected paths are written by hand from the text each case builds.

Sources: RFC 8259 sec. 8.1 ("Implementations MUST NOT add a byte order mark (U+FEFF) to the
beginning of a networked-transmitted JSON text"; parsers "MAY ignore" one) and sec. 4 ("The
names within an object SHOULD be unique"; with duplicates "the behavior of software that
receives such an object is unpredictable").
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas.common import DeadLetterReason
from schemas.decode import Rejection, decode_visit
from schemas.duplicate_keys import duplicate_key_detail
from schemas.visit import TherapyVisitCompleted
from tests.factories import raw, timed_visit

VISIT = timed_visit(("97110", 2, 33), ("97140", 1, 7))
VISIT["documents"] = [{"doc_id": "D-1", "kind": "daily_note", "signed_at": "2026-03-02T16:00:00Z"}]
GOOD = raw(VISIT)


def rejected(value: bytes) -> Rejection:
    result = decode_visit(value)
    assert isinstance(result, Rejection), "accepted"
    return result


def test_the_base_record_is_valid() -> None:
    assert isinstance(decode_visit(GOOD), TherapyVisitCompleted)


# --- byte-order marks ------------------------------------------------------------------------


def test_utf8_bom_stays_invalid_json_and_the_detail_names_it() -> None:
    r = rejected(b"\xef\xbb\xbf" + GOOD)
    assert r.reason is DeadLetterReason.INVALID_JSON
    assert "starts with a UTF-8 byte-order mark" in r.detail
    assert "line 1 column 1" not in r.detail


@pytest.mark.parametrize(("codec", "endian"), [("utf-16-le", "little"), ("utf-16-be", "big")])
def test_utf16_with_bom_is_named(codec: str, endian: str) -> None:
    bom = b"\xff\xfe" if endian == "little" else b"\xfe\xff"
    r = rejected(bom + GOOD.decode().encode(codec))
    assert r.reason is DeadLetterReason.INVALID_JSON
    assert f"UTF-16 {endian}-endian byte-order mark" in r.detail


def test_a_bom_later_in_the_record_is_ordinary_invalid_json() -> None:
    r = rejected(b" \xef\xbb\xbf" + GOOD)
    assert r.reason is DeadLetterReason.INVALID_JSON
    assert "byte-order mark" not in r.detail


# --- duplicate keys --------------------------------------------------------------------------


def swap(old: bytes, new: bytes, text: bytes = GOOD) -> bytes:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


DUPLICATES: list[tuple[str, bytes, str]] = [
    # (case, record, the path the detail must name)
    ("issue_units_4_then_1", swap(b'"units":2', b'"units":4,"units":1'), "services.0.units"),
    ("second_line_cpt", swap(b'"cpt":"97140"', b'"cpt":"97140","cpt":"97530"'), "services.1.cpt"),
    ("top_level", swap(b'"visit_id":"V-1001"', b'"visit_id":"V-1","visit_id":"V-2"'), "visit_id"),
    ("payer", swap(b'"kind":"medicare"', b'"kind":"commercial","kind":"medicare"'), "payer.kind"),
    (
        "rendering_provider",
        swap(b'"credential":"PT"', b'"credential":"PTA","credential":"PT"'),
        "rendering_provider.credential",
    ),
    (
        "document",
        swap(b'"kind":"daily_note"', b'"kind":"written_report","kind":"daily_note"'),
        "documents.0.kind",
    ),
    ("same_value_twice", swap(b'"units":2', b'"units":2,"units":2'), "services.0.units"),
    ("spaced", swap(b'"units":2', b'"units" : 4 ,\n "units":2'), "services.0.units"),
    ("escaped_spelling", swap(b'"units":2', b'"units":4,"unit\\u0073":2'), "services.0.units"),
    ("unknown_field", swap(b'"visit_id"', b'"extra":{"a":1,"a":2},"visit_id"'), "extra.a"),
    (
        "nested_arrays",
        swap(b'"visit_id"', b'"extra":[[{"k":"x"}],[{"k":1,"k":2}]],"visit_id"'),
        "extra.1.0.k",
    ),
    (
        "first_value_invalid",  # the validator saw only the last value
        swap(b'"units":2', b'"units":"four","units":2'),
        "services.0.units",
    ),
    (
        "last_value_invalid",  # the validator's type error is not the root cause
        swap(b'"units":2', b'"units":2,"units":"two"'),
        "services.0.units",
    ),
    (
        "schema_version",  # not unsupported_version: which version is meant is ambiguous
        swap(b'"schema_version":1', b'"schema_version":1,"schema_version":2'),
        "schema_version",
    ),
]


@pytest.mark.parametrize(("case", "value", "path"), DUPLICATES, ids=[c for c, _, _ in DUPLICATES])
def test_duplicate_keys_are_schema_violations_naming_the_path(
    case: str, value: bytes, path: str
) -> None:
    r = rejected(value)
    assert r.reason is DeadLetterReason.SCHEMA_VIOLATION, (case, r.detail)
    assert r.detail.startswith(f"{path}: duplicate key"), (case, r.detail)


def test_the_detail_names_keys_never_values() -> None:
    value = swap(b'"visit_id"', b'"note":"Jane Doe","note":"1960-01-01","visit_id"')
    r = rejected(value)
    assert r.detail.startswith("note: duplicate key")
    assert "Jane" not in r.detail and "1960" not in r.detail


def test_key_names_are_shown_printable_and_short() -> None:
    long_key = "k" * 200
    value = swap(b'"visit_id"', f'"{long_key}":1,"{long_key}":2,"visit_id"'.encode())
    assert rejected(value).detail.startswith("k" * 64 + "...: duplicate key")
    odd = swap(b'"visit_id"', '"na\\u0000m\u00e9":1,"na\\u0000m\u00e9":2,"visit_id"'.encode())
    assert rejected(odd).detail.startswith("na?m?: duplicate key")


@pytest.mark.parametrize(
    "value",
    [
        # Escapes, quotes and colons inside strings are not keys.
        swap(b'"visit_id"', b'"note":"say \\"units\\": 4, \\"units\\": 1","visit_id"'),
        swap(b'"visit_id"', b'"t":":05","u":"a\\u003ab","visit_id"'),
        # The same key in different objects is not a duplicate.
        swap(b'"visit_id"', b'"extra":[{"k":1},{"k":2}],"more":{"k":{"k":3}},"visit_id"'),
        # Keys equal up to case or spacing are different keys.
        swap(b'"visit_id"', b'"Units":1,"units ":2,"visit_id"'),
    ],
)
def test_no_false_duplicates(value: bytes) -> None:
    assert isinstance(decode_visit(value), TherapyVisitCompleted)
    assert duplicate_key_detail(value) is None


def test_valid_records_never_take_the_slow_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common record (no backslash) is cleared by the count comparison alone: the full
    parse with object_pairs_hook is not run (bench/RESULTS.md "Input hygiene")."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("slow path taken")

    monkeypatch.setattr("schemas.duplicate_keys.json.loads", refuse)
    assert isinstance(decode_visit(GOOD), TherapyVisitCompleted)


def test_a_record_the_second_parser_refuses_is_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two parsers disagreeing on a text is the risk itself: fail closed."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise ValueError("refused")

    monkeypatch.setattr("schemas.duplicate_keys.json.loads", refuse)
    escaped = swap(b'"visit_id":"V-1001"', b'"visit_id":"V-\\u0031001"')  # takes the exact path
    r = rejected(escaped)
    assert r.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert "duplicate keys cannot be ruled out" in r.detail


def test_a_patient_ref_leak_is_counted_also_when_the_record_has_another_error() -> None:
    # Review finding: the pattern was checked only on records the schema accepted, so a name in
    # patient_ref next to any other error went uncounted. The detail stays the first error.
    import orjson

    from schemas.decode import Rejection, decode_visit
    from schemas.patient_ref import PatientRefProblem
    from tests.factories import raw, timed_visit

    data = timed_visit(("97110", 2, 30))
    data["patient_ref"] = "Jane Doe"
    data["services"][0]["units"] = -2
    result = decode_visit(raw(data))
    assert isinstance(result, Rejection)
    assert "units" in result.detail and "Jane" not in result.detail
    assert result.patient_ref is PatientRefProblem.SPACE
    dup = raw(timed_visit(("97110", 2, 30)))[:-1] + b',"visit_id":"V-2","patient_ref":"Jo Ann"}'
    result = decode_visit(dup)
    assert isinstance(result, Rejection) and "duplicate" in result.detail
    assert result.patient_ref is PatientRefProblem.SPACE
    data["patient_ref"] = "P-1"
    result = decode_visit(raw(data))
    assert isinstance(result, Rejection) and result.patient_ref is None
    assert orjson.loads(raw(data))["patient_ref"] == "P-1"
