"""faust's built-in web endpoints stay off on the worker's port: `/table/...` would serve table
values (a patient's history, a visit's EHR parts) and `/router/...` the cluster's worker URLs to
anyone who reaches the port. streams/app.py turns them off (`web_tables_enabled`,
`web_router_enabled`); this checks a real worker, with the EHR path on (both tables exist) and a
patient's history written, answers 404 there while /health and /metrics still answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.factories import raw, timed_visit
from tests.integration.harness import Topics, Worker, consume, create_topics, produce

pytestmark = pytest.mark.timeout(120)
MARK = "WEBMARK"
PATIENT = f"P-{MARK}"
TABLES = ("patient-history", "ehr-visit-join")


@pytest.mark.asyncio
async def test_table_and_router_endpoints_are_not_served(make_worker: Any) -> None:
    t = Topics.unique("web")
    await create_topics(t)
    worker: Worker = make_worker(
        t,
        # The EHR path declares the second table (ehr-visit-join); its topics the worker creates.
        TC_EHR_PATIENT_KEY="integration-test-key-0123456789",
        TC_EHR_PROFILE=str(Path(__file__).resolve().parents[2] / "ehr/profile.toml"),
        TC_TOPIC_HL7_INBOUND=f"{t.visits}.hl7",
        TC_TOPIC_FHIR_INBOUND=f"{t.visits}.fhir",
        TC_TOPIC_EHR_PARTS=f"{t.visits}.parts",
        TC_TOPIC_EHR_DEADLETTER=f"{t.visits}.ehrdl",
    )
    worker.start()
    # A history entry exists for this key, so a served /table would have something to show.
    visit = raw(timed_visit(("97110", 2, 30), patient_ref=PATIENT))
    await produce(t.visits, [(PATIENT.encode(), visit)])
    await consume([t.checked], until=1)

    paths = ["/table", "/table/", "/router", "/router/"]
    for table in TABLES:
        paths += [f"/table/{table}/", f"/table/{table}/{PATIENT}/", f"/table/{table}/some-key/"]
        paths += [f"/router/{table}/", f"/router/{table}/{PATIENT}/", f"/router/{table}/some-key/"]
    for path in paths:
        status, body = worker.get(path)
        # aiohttp's own 404 (no route): faust's table view answers a missing key with a 404
        # too, but a JSON body ("key not found"), which would mean the route is served.
        assert (status, body) == (404, b"404: Not Found"), (path, status, body[:200])

    assert worker.get("/health")[0] == 200
    assert "therapy_compliance_visits_processed_total{" in worker.metrics()
