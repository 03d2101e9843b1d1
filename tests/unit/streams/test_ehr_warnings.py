"""The parse stage counts and logs what it reads on without a part (issue 20 items 3 and 7): a
non-therapy FHIR Procedure and a searchset's warning outcome give no part and no dead letter, a
`therapy_compliance_ehr_warnings_total{reason}` count each, and a WARNING log line that names
the reason, the record and the resource ref, never patient data."""

from __future__ import annotations

import logging

import orjson
import pytest

from ehr import load_config
from runtime.settings import Settings
from streams.ehr_stages import EhrParser
from streams.metrics import Metrics
from streams.processor import Record
from tests.unit.ehr.fhirbuild import (
    MRN,
    claim,
    defibrillator_implant,
    outcome,
    people,
    searchset,
)

KEY = "unit-test-key-0123456789"
SETTINGS = Settings.from_env({"TC_EHR_PATIENT_KEY": KEY})


def test_warnings_are_counted_and_logged_without_patient_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bundle = searchset(
        [claim(("97110", 2)), defibrillator_implant()],
        people(),
        [outcome("information", "informational")],
    )
    metrics = Metrics()
    parser = EhrParser(SETTINGS, load_config(KEY), metrics)
    raw = orjson.dumps(bundle)
    with caplog.at_level(logging.WARNING, logger="streams.ehr"):
        outs = parser.handle(
            Record(SETTINGS.topic_fhir_inbound, 0, 5, b"k", raw, 1_772_470_800_000)
        )
    # The charges only: neither the implant nor the outcome becomes a part or a dead letter.
    assert [o.topic for o in outs] == [SETTINGS.topic_ehr_parts]
    assert orjson.loads(outs[0].value or b"")["part"] == "charges"

    def count(reason: str) -> float | None:
        return metrics.registry.get_sample_value(
            "therapy_compliance_ehr_warnings_total", {"reason": reason}
        )

    assert count("not_therapy_procedure") == 1 and count("search_outcome") == 1
    assert (
        metrics.registry.get_sample_value(
            "therapy_compliance_ehr_rejected_total", {"reason": "not_a_visit"}
        )
        is None
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "streams.ehr"]
    # The bundle's own warnings (its outcome) first, then the entries'.
    assert len(lines) == 2
    assert lines[0].startswith("search_outcome") and "OperationOutcome/search-note" in lines[0]
    assert lines[1].startswith("not_therapy_procedure") and "Procedure/defib-implant" in lines[1]
    assert f"{SETTINGS.topic_fhir_inbound}[0]@5" in lines[1] and "33249" in lines[1]
    for line in lines:
        assert MRN not in line and "Doe" not in line and "Jane" not in line


def test_an_empty_searchset_is_counted_not_dead_lettered(caplog: pytest.LogCaptureFixture) -> None:
    # Review defect 9: a search that matched nothing (no entry, Bundle.total 0) gives no part,
    # no dead letter, and a search_empty count and log line.
    metrics = Metrics()
    parser = EhrParser(SETTINGS, load_config(KEY), metrics)
    raw = orjson.dumps(searchset([], []))
    with caplog.at_level(logging.WARNING, logger="streams.ehr"):
        outs = parser.handle(
            Record(SETTINGS.topic_fhir_inbound, 0, 9, b"k", raw, 1_772_470_800_000)
        )
    assert outs == []
    assert (
        metrics.registry.get_sample_value(
            "therapy_compliance_ehr_warnings_total", {"reason": "search_empty"}
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "therapy_compliance_ehr_rejected_total", {"reason": "not_a_visit"}
        )
        is None
    )
    [line] = [r.getMessage() for r in caplog.records if r.name == "streams.ehr"]
    assert line.startswith("search_empty") and f"{SETTINGS.topic_fhir_inbound}[0]@9" in line
