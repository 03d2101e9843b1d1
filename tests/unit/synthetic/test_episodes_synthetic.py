"""The episode generator (synthetic/visits.py) and `audit` over its multi-month history:
- every event is a valid TherapyVisitCompleted v1 and every NPI passes its check digit;
- `audit` over the file gives exactly the alerts of evaluating visit by visit with state kept
  as the worker keeps it (serialised to bytes and back per visit, seq = partition offsets);
- the generator's intents are honoured: each visit raises exactly the episode and KX rules of
  its flaws (EVENTS.md "v1 additions"; CMS Pub. 100-02, Ch. 15, sec. 220.1.2-220.3; Pub.
  100-04, Ch. 5, sec. 10.3), and nothing else.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from cli.audit import run_audit
from compliance import Engine, PatientHistory
from schemas import Rejection, decode_visit
from synthetic.visits import (
    EPISODE_FLAWS,
    EpisodeGenerator,
    Record,
    VisitGenerator,
    generator,
)

NOW = datetime(2026, 12, 31, tzinfo=UTC)


def luhn_npi_ok(npi: str) -> bool:
    """NPI check digit, written out from the CMS NPI standard: Luhn over "80840" + the NPI."""
    digits = [int(c) for c in "80840" + npi]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2
            d = d // 10 + d % 10
        total += d
    return total % 10 == 0


@pytest.fixture(scope="module")
def feed() -> list[Record]:
    # Two cohorts of 80 patients (~4,000 visits over ten months).
    gen = EpisodeGenerator(seed=23, patients=80)
    return list(gen.records(4000))


def test_known_npis() -> None:
    assert luhn_npi_ok("1234567893") and luhn_npi_ok("1245319599")
    assert not luhn_npi_ok("1234567890")


def test_every_event_is_valid_and_every_npi_passes(feed: list[Record]) -> None:
    for rec in feed:
        visit = decode_visit(rec.value)
        assert not isinstance(visit, Rejection), (rec.intent, visit)
        assert rec.key == visit.patient_ref.encode()
        assert luhn_npi_ok(visit.rendering_provider.npi)
    for rec in VisitGenerator(seed=3, malformed_share=0).records(300):
        visit = decode_visit(rec.value)
        assert not isinstance(visit, Rejection)
        assert luhn_npi_ok(visit.rendering_provider.npi)


def test_generator_is_deterministic_and_in_date_order(feed: list[Record]) -> None:
    again = list(EpisodeGenerator(seed=23, patients=80).records(4000))
    assert [r.value for r in again] == [r.value for r in feed]
    # One cohort, fed in date order; a correction is re-sent days after its visit (a late event).
    days = [orjson.loads(r.value)["date_of_service"] for r in feed[:2000]]
    in_order = [d for d, r in zip(days, feed[:2000], strict=True) if r.intent != "correction"]
    assert in_order == sorted(in_order)
    assert len(in_order) < len(days)


def test_generator_modes() -> None:
    assert isinstance(generator("visits", seed=1), VisitGenerator)
    assert isinstance(generator("episodes", seed=1), EpisodeGenerator)
    with pytest.raises(ValueError, match="unknown synthetic mode"):
        generator("bogus")
    live = list(generator("episodes", seed=2, live=True, malformed_share=0).records(50))
    assert max(orjson.loads(r.value)["date_of_service"] for r in live) <= date.today().isoformat()
    assert all(not isinstance(decode_visit(r.value), Rejection) for r in live)


def _audit(feed: list[Record]) -> tuple[list[dict[str, Any]], dict[str, object]]:
    data = b"".join(r.value + b"\n" for r in feed)
    out, err = io.BytesIO(), io.StringIO()
    run_audit(io.BytesIO(data), out, err, engine=Engine())
    alerts = [orjson.loads(x) for x in out.getvalue().splitlines()]
    summary = orjson.loads(err.getvalue().splitlines()[-1])["summary"]
    return alerts, summary


def _stream(feed: list[Record]) -> list[dict[str, Any]]:
    """As the worker: per-patient state as bytes in a table, seq = the record's offset."""
    engine = Engine()
    table: dict[bytes, bytes] = {}
    alerts = []
    for offset, rec in enumerate(feed, start=5_000):
        visit = decode_visit(rec.value)
        assert not isinstance(visit, Rejection)
        stored = table.get(rec.key)
        history = PatientHistory.from_bytes(stored) if stored else PatientHistory()
        outcome = engine.evaluate(visit, NOW, history, seq=offset)
        assert outcome.history is not None
        table[rec.key] = outcome.history.to_bytes()
        alerts += [orjson.loads(a.to_json()) for a in outcome.alerts]
    return alerts


def test_audit_gives_the_alerts_the_stream_gives(feed: list[Record]) -> None:
    audited, _ = _audit(feed)
    streamed = _stream(feed)

    def strip(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in a.items() if k != "detected_at"} for a in alerts]

    assert strip(audited) == strip(streamed)
    assert len(audited) > 100


def test_intents_are_honoured(feed: list[Record]) -> None:
    alerts, summary = _audit(feed)
    # By event: a corrected visit's two events share its visit_id, and only the first raises.
    by_event: dict[str, set[str]] = defaultdict(set)
    for a in alerts:
        by_event[a["event_id"]].add(a["rule_id"])
    seen: Counter[str] = Counter()
    for rec in feed:
        event = orjson.loads(rec.value)
        flaws = [] if rec.intent == "clean" else rec.intent.split("+")
        seen.update(flaws)
        expected = set().union(*(EPISODE_FLAWS[f] for f in flaws)) if flaws else set()
        assert by_event.get(event["event_id"], set()) == expected, (event["visit_id"], rec.intent)
    assert set(EPISODE_FLAWS) <= set(seen), seen  # every kind of flaw was generated
    assert seen["start_unseen"] == summary["episode_status"]["start_unseen"]  # type: ignore[index]


def test_audit_main_takes_the_episode_horizon(tmp_path: Any, capsys: Any) -> None:
    from cli.audit import audit_main

    path = tmp_path / "visits.jsonl"
    path.write_bytes(
        b"".join(r.value + b"\n" for r in EpisodeGenerator(seed=4, patients=3).records(40))
    )
    assert audit_main(str(path), horizon_days=90, episode_horizon_days=30) == 2  # shorter: refused
    assert "episode_horizon_days" in capsys.readouterr().err
    assert audit_main(str(path), horizon_days=90, episode_horizon_days=500) == 0
    summary = orjson.loads(capsys.readouterr().err.splitlines()[-1])["summary"]
    assert summary["visits_read"] == 40 and "episode_status" in summary
