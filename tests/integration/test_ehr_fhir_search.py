"""Issue 20 items 3 and 7 through the worker on the real broker: a FHIR searchset (a REST query's
answer) on ehr.fhir.inbound.v1 holding a PT Claim, a defibrillator Procedure (CPT 33249, not a
therapy code) and a warning OperationOutcome gives the visit `convert` gives for the same bundle:
charges only, "documentation not received" after the wait; the two warnings are counted in
`therapy_compliance_ehr_warnings_total{reason}` and logged, nothing is dead-lettered, and
neither the metrics nor the log hold the patient's MRN or name."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import Worker, consume, produce
from tests.integration.test_ehr_stream import ehr_topics, offline_visit, visits_on
from tests.unit.ehr.fhirbuild import (
    MRN,
    claim,
    defibrillator_implant,
    outcome,
    people,
    searchset,
)

pytestmark = pytest.mark.timeout(240)


@pytest.mark.asyncio
async def test_a_searchset_with_a_non_therapy_procedure_gives_the_convert_visit(
    make_worker: Any, tmp_path: Path
) -> None:
    t, env = ehr_topics("ehr-fhir-search")
    worker: Worker = make_worker(t, TC_JOIN_WAIT_S="3", **env)
    worker.start()
    bundle = orjson.dumps(
        searchset(
            [claim(("97110", 2)), defibrillator_implant()],
            people(),
            [outcome("warning", "too-costly")],
        )
    )
    await produce(env["TC_TOPIC_FHIR_INBOUND"], [(b"any-key", bundle)])
    visits = await visits_on(t, 1, timeout=60, idle=4)
    expected = offline_visit(bundle, tmp=tmp_path, source="fhir")
    assert visits == [expected]
    assert expected["parts_missing"] == ["documentation"]
    assert [(s["cpt"], s["units"]) for s in expected["services"]] == [("97110", 2)]
    deadline = time.monotonic() + 30
    metrics = worker.metrics()
    while 'therapy_compliance_ehr_warnings_total{reason="search_outcome"} 1.0' not in metrics:
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.2)
        metrics = worker.metrics()
    assert 'therapy_compliance_ehr_warnings_total{reason="not_therapy_procedure"} 1.0' in metrics
    assert "therapy_compliance_ehr_rejected_total{" not in metrics
    letters = await consume([env["TC_TOPIC_EHR_DEADLETTER"]], until=1, timeout=3, idle_after=1)
    assert letters == []
    log = worker.log_path.read_text(errors="replace")
    assert "not_therapy_procedure" in log and "Procedure/defib-implant" in log
    for marker in (MRN, "Doe", "Jane"):
        assert marker not in log and marker not in metrics
    worker.stop()
