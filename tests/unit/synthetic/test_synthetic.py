"""The synthetic feed (demo and benchmarks) means what it says: clean visits raise nothing,
every flawed visit raises at least one alert, malformed records are rejected."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from compliance import Engine
from schemas import Rejection, decode_visit
from synthetic.visits import FLAWS, MALFORMED, VisitGenerator

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_generator_intents_match_engine_verdicts(engine: Engine) -> None:
    seen: Counter[str] = Counter()
    for rec in VisitGenerator(seed=11, malformed_share=0.05).records(3000):
        kind = rec.intent.split(":")[0]
        seen[rec.intent if kind != "malformed" else "malformed"] += 1
        result = decode_visit(rec.value)
        if kind == "malformed":
            assert isinstance(result, Rejection), rec.intent
            continue
        assert not isinstance(result, Rejection), (rec.intent, result)
        findings = engine.check(result)
        outcome = engine.evaluate(result, NOW)
        # Every event the engine emits is valid under the strict v1 contract models.
        assert [a.model().rule_id for a in outcome.alerts] == [f.rule_id for f in findings]
        assert outcome.checked.model().alert_ids == [a.alert_id for a in outcome.alerts]
        if rec.intent == "clean":
            assert findings == [], [f.rule_id for f in findings]
        else:
            assert findings, rec.intent
        assert rec.key == result.patient_ref.encode()
    assert set(FLAWS) <= set(seen) and seen["malformed"] > 50
    assert 0.6 < seen["clean"] / 3000 < 0.75


def test_generator_is_deterministic_per_seed() -> None:
    a = [r.value for r in VisitGenerator(seed=5).records(50)]
    b = [r.value for r in VisitGenerator(seed=5).records(50)]
    assert a == b
    assert len(MALFORMED) >= 5
