"""Poison input: 50 kinds of bad records interleaved with good ones. Each bad one lands in the
dead-letter topic with the right reason and its original bytes (and, for the input-hygiene
cases of docs/rules.md, a detail naming the problem); each good one is checked; the worker
never restarts."""

from __future__ import annotations

import base64
import copy
from collections import Counter
from typing import Any

import orjson
import pytest

from tests.factories import line, raw, timed_visit
from tests.integration.harness import Topics, Worker, by_topic, consume, create_topics, produce

pytestmark = pytest.mark.timeout(240)


def good(i: int) -> dict[str, Any]:
    data = timed_visit(("97110", 2, 33), ("97140", 1, 7))
    data.update(event_id=f"good-{i}", visit_id=f"V-good-{i}", patient_ref="P-88f1")
    return data


def mutated(fn: Any) -> bytes:
    data = copy.deepcopy(good(0))
    data.update(event_id="bad", visit_id="V-bad")
    fn(data)
    return raw(data)


def duplicated(old: bytes, new: bytes) -> bytes:
    """The good record with one key repeated in its text (no encoder writes a duplicate)."""
    text = mutated(lambda d: None)
    assert old in text
    return text.replace(old, new, 1)


def deep(n: int) -> bytes:
    return b'{"a":' * n + b"1" + b"}" * n


K = b"P-88f1"
# (name, key, value, reason)
POISON: list[tuple[str, bytes | None, bytes | None, str]] = [
    ("not_json", K, b"hello world", "invalid_json"),
    ("truncated_json", K, raw(good(0))[:57], "invalid_json"),
    ("empty_value", K, b"", "invalid_json"),
    ("tombstone", K, None, "invalid_json"),
    ("invalid_utf8", K, b'{"visit_id": "\xff\xfe"}', "invalid_json"),
    ("nul_bytes", K, b"\x00\x00\x00\x00", "invalid_json"),
    ("deeply_nested", K, deep(5000), "invalid_json"),
    ("utf8_bom", K, b"\xef\xbb\xbf" + raw(good(0)), "invalid_json"),
    ("trailing_garbage", K, raw(good(0)) + b"}}", "invalid_json"),
    ("json_array", K, b"[1, 2, 3]", "schema_violation"),
    ("json_string", K, b'"a visit"', "schema_violation"),
    ("json_number", K, b"42", "schema_violation"),
    ("json_null", K, b"null", "schema_violation"),
    ("nul_in_string", K, mutated(lambda d: d.update(visit_id="V\u0000-1")), "schema_violation"),
    ("version_2", K, mutated(lambda d: d.update(schema_version=2)), "unsupported_version"),
    ("version_0", K, mutated(lambda d: d.update(schema_version=0)), "unsupported_version"),
    ("version_string", K, mutated(lambda d: d.update(schema_version="1")), "schema_violation"),
    ("missing_visit_id", K, mutated(lambda d: d.pop("visit_id")), "schema_violation"),
    ("missing_services", K, mutated(lambda d: d.pop("services")), "schema_violation"),
    ("missing_payer", K, mutated(lambda d: d.pop("payer")), "schema_violation"),
    ("units_string", K, mutated(lambda d: d["services"][0].update(units="2")), "schema_violation"),
    ("units_float", K, mutated(lambda d: d["services"][0].update(units=2.5)), "schema_violation"),
    ("units_bool", K, mutated(lambda d: d["services"][0].update(units=True)), "schema_violation"),
    (
        "negative_minutes",
        K,
        mutated(lambda d: d["services"][0].update(minutes=-5)),
        "schema_violation",
    ),
    ("negative_units", K, mutated(lambda d: d["services"][0].update(units=-1)), "schema_violation"),
    (
        "minutes_over_a_day",
        K,
        mutated(lambda d: d.update(total_timed_minutes=5000)),
        "schema_violation",
    ),
    (
        "ten_thousand_lines",
        K,
        mutated(lambda d: d.update(services=[line(str(i), "97110", 0, 1) for i in range(10_000)])),
        "schema_violation",
    ),
    ("five_megabytes", K, b'{"pad": "' + b"x" * 5_000_000 + b'"}', "too_large"),
    ("unknown_discipline", K, mutated(lambda d: d.update(discipline="RT")), "schema_violation"),
    (
        "unknown_payer_kind",
        K,
        mutated(lambda d: d["payer"].update(kind="tricare")),
        "schema_violation",
    ),
    (
        "unknown_credential",
        K,
        mutated(lambda d: d["rendering_provider"].update(credential="RN")),
        "schema_violation",
    ),
    (
        "bad_npi",
        K,
        mutated(lambda d: d["rendering_provider"].update(npi="123")),
        "schema_violation",
    ),
    (
        "bad_cpt_format",
        K,
        mutated(lambda d: d["services"][0].update(cpt="97-10")),
        "schema_violation",
    ),
    (
        "future_date_of_service",
        K,
        mutated(lambda d: d.update(date_of_service="2030-01-01")),
        "schema_violation",
    ),
    (
        "impossible_date",
        K,
        mutated(lambda d: d.update(date_of_service="2026-02-30")),
        "schema_violation",
    ),
    (
        "naive_timestamp",
        K,
        mutated(lambda d: d.update(occurred_at="2026-03-02T15:04:05")),
        "schema_violation",
    ),
    (
        "duplicate_line_id",
        K,
        mutated(lambda d: d["services"].append(line("1", "97140", 1, 8))),
        "schema_violation",
    ),
    (
        "five_modifiers",
        K,
        mutated(lambda d: d["services"][0].update(modifiers=["GP", "59", "KX", "CQ", "XU"])),
        "schema_violation",
    ),
    ("huge_visit_id", K, mutated(lambda d: d.update(visit_id="V" * 500)), "schema_violation"),
    ("empty_key", b"", raw(good(0)), "schema_violation"),
    ("no_key", None, raw(good(0)), "schema_violation"),
    ("key_not_patient", b"P-someone-else", raw(good(0)), "schema_violation"),
    # Input hygiene (docs/rules.md "Input hygiene").
    ("utf16_bom", K, b"\xff\xfe" + raw(good(0)).decode().encode("utf-16-le"), "invalid_json"),
    ("duplicate_units", K, duplicated(b'"units":2', b'"units":4,"units":1'), "schema_violation"),
    (
        "duplicate_top_level",
        K,
        duplicated(b'"visit_id":"V-bad"', b'"visit_id":"V-bad","visit_id":"V-good-0"'),
        "schema_violation",
    ),
    (
        "duplicate_payer_kind",
        K,
        duplicated(b'"kind":"medicare"', b'"kind":"commercial","kind":"medicare"'),
        "schema_violation",
    ),
    (
        "duplicate_escaped",
        K,
        duplicated(b'"minutes":33', b'"minutes":33,"minute\\u0073":53'),
        "schema_violation",
    ),
    (
        "duplicate_in_unknown_field",
        K,
        duplicated(b'"visit_id"', b'"ext":[{"a":1,"a":2}],"visit_id"'),
        "schema_violation",
    ),
    (
        "patient_ref_name_and_birth_date",
        b"Jane Doe 1960-01-01",
        mutated(lambda d: d.update(patient_ref="Jane Doe 1960-01-01")),
        "schema_violation",
    ),
    (
        "patient_ref_not_ascii",
        K,
        mutated(lambda d: d.update(patient_ref="J\u00f6rg-1")),
        "schema_violation",
    ),
]

#: What the dead letter's detail must say for the input-hygiene cases (never the values).
DETAILS = {
    "utf8_bom": "starts with a UTF-8 byte-order mark",
    "utf16_bom": "UTF-16 little-endian byte-order mark",
    "duplicate_units": "services.0.units: duplicate key",
    "duplicate_top_level": "visit_id: duplicate key",
    "duplicate_payer_kind": "payer.kind: duplicate key",
    "duplicate_escaped": "services.0.minutes: duplicate key",
    "duplicate_in_unknown_field": "ext.0.a: duplicate key",
    "patient_ref_name_and_birth_date": "patient_ref: contains a space",
}


def test_corpus_has_at_least_30_kinds() -> None:
    assert len({name for name, *_ in POISON}) == len(POISON) >= 30


@pytest.mark.asyncio
async def test_poison_interleaved_with_good_records(make_worker: Any) -> None:
    t = Topics.unique("poison")
    worker: Worker = make_worker(t, TC_PARTITIONS="1")
    await create_topics(t, partitions=1)  # one partition: one ordered stream to interleave
    records: list[tuple[bytes | None, bytes | None]] = []
    for i, (_, key, value, _) in enumerate(POISON):
        records.append((K, raw(good(i))))
        records.append((key, value))
    # An unknown CPT code is not a bad record: the contract makes it an UNKNOWN_CODE warning.
    unknown = good(999)
    unknown["services"].append(line("9", "98975", 1))  # remote monitoring: not in the catalog
    records.append((K, raw(unknown)))
    # Nor is a rendering NPI with a wrong check digit: it is RENDERING_NPI_INVALID (CMS's
    # worked example 123456789 has check digit 3, so 1234567890 is invalid).
    bad_npi = good(998)
    bad_npi["rendering_provider"]["npi"] = "1234567890"
    records.append((K, raw(bad_npi)))
    await produce(t.visits, records)  # type: ignore[arg-type]
    worker.start()
    pid = worker.proc.pid if worker.proc else None
    n_good = len(POISON) + 2
    recs = await consume(
        [t.checked, t.deadletter, t.alerts],
        until=lambda rs: (
            len({(r.topic, r.offset) for r in rs if r.topic != t.alerts}) >= n_good + len(POISON)
        ),
        timeout=120,
        idle_after=1,
    )
    letters = by_topic(recs, t.deadletter)
    got = Counter(
        (d["reason"], base64.b64decode(d["value_b64"]) if d["value_b64"] is not None else None)
        for d in letters
    )
    want = Counter((reason, value) for _, _, value, reason in POISON)
    assert got == want
    checked = {c["event_id"] for c in by_topic(recs, t.checked)}
    assert checked == {f"good-{i}" for i in range(len(POISON))} | {"good-999", "good-998"}
    unknown_alerts = [a for a in by_topic(recs, t.alerts) if a["event_id"] == "good-999"]
    assert "UNKNOWN_CODE" in {a["rule_id"] for a in unknown_alerts}
    npi_alerts = [a for a in by_topic(recs, t.alerts) if a["event_id"] == "good-998"]
    assert [a["rule_id"] for a in npi_alerts] == ["RENDERING_NPI_INVALID"]
    by_value = {value: name for name, _, value, _ in POISON}
    for d in letters:  # details name the problem, never the payload
        assert "xxxxxxxx" not in d["detail"] and "hello world" not in d["detail"]
        assert "Jane" not in d["detail"] and "1960" not in d["detail"]
        value = base64.b64decode(d["value_b64"]) if d["value_b64"] is not None else None
        want = DETAILS.get(by_value[value], "")
        assert want in d["detail"], (by_value[value], d["detail"])
    status, metrics = worker.get("/metrics")
    assert status == 200
    assert b'therapy_compliance_patient_ref_rejections_total{reason="space"} 1.0' in metrics
    assert b'therapy_compliance_patient_ref_rejections_total{reason="charset"} 1.0' in metrics
    assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
    assert worker.log_path.read_text().count("===== start") == 1
    assert "Traceback" not in worker.log_path.read_text()
    assert orjson.loads(worker.get("/health")[1])["status"] == "ok"
