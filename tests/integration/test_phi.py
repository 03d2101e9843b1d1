"""No PHI leaks: visits carrying marker values go through a worker logging at DEBUG; the logs,
the metrics and the free text of alerts, audit records and dead letters must show nothing but
the opaque references the contract allows (visit_id, event_id, patient_ref, payer_id, line ids)
in their own fields. Dead letters keep the original bytes by design (value_b64, for replay)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import line, raw, timed_visit
from tests.integration.harness import Topics, Worker, by_topic, consume, create_topics, produce

pytestmark = pytest.mark.timeout(180)
MARK = "PHIMARK"
REFS = ("visit_id", "event_id", "patient_ref", "payer_id", "line_ids", "alert_ids")


def marked_visit(n: int, flagged: bool) -> dict[str, Any]:
    data = timed_visit(("97110", 3 if flagged else 2, 33), ("97140", 1, 7))
    data.update(
        event_id=f"E-{MARK}-{n}",
        visit_id=f"V-{MARK}-{n}",
        patient_ref=f"P-{MARK}-{n}",
        # fields outside the contract, as a careless EHR export might add them
        patient_name=f"Jane {MARK} Doe",
        mrn=f"MRN-{MARK}-{n}",
        dob="1950-01-01",
        ssn=f"123-45-{MARK}",
    )
    data["payer"]["payer_id"] = f"PAYER-{MARK}"
    data["services"][0]["line_id"] = f"L-{MARK}"
    data["services"][0]["note"] = f"patient {MARK} reported pain"
    data["documents"] = [
        {"doc_id": f"D-{MARK}", "kind": "daily_note", "signed_at": "2026-03-02T16:00:00Z"}
    ]
    if flagged:
        data["services"].append(line("9", "97750", 1, 0))  # report missing too
    return data


def strip_refs(event: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in event.items() if k not in REFS})


@pytest.mark.asyncio
async def test_logs_metrics_and_events_carry_no_phi(make_worker: Any) -> None:
    t = Topics.unique("phi")
    worker: Worker = make_worker(t, TC_LOG_LEVEL="debug")
    await create_topics(t)
    flagged, clean = marked_visit(1, True), marked_visit(2, False)
    bad_type = marked_visit(3, False)
    bad_type["discipline"] = f"{MARK}-discipline"
    records = [
        (f"P-{MARK}-1".encode(), raw(flagged)),
        (f"P-{MARK}-2".encode(), raw(clean)),
        (f"P-{MARK}-3".encode(), raw(bad_type)),
        (f"P-{MARK}-4".encode(), f'{{"patient_name": "Jane {MARK}", oops'.encode()),
        (b"P-wrong-key", raw(marked_visit(5, True))),
    ]
    worker.start()
    await produce(t.visits, records)
    recs = await consume(
        [t.alerts, t.checked, t.deadletter],
        until=lambda rs: (
            len({(r.topic, r.offset, r.partition) for r in rs if r.topic != t.alerts}) >= 5
        ),
        idle_after=1.5,
    )
    alerts = by_topic(recs, t.alerts)
    checked = by_topic(recs, t.checked)
    dead = by_topic(recs, t.deadletter)
    assert len(checked) == 2 and len(dead) == 3 and len(alerts) >= 2
    for event in alerts + checked:
        assert MARK not in strip_refs(event), event
    for letter in dead:
        assert MARK not in letter["detail"], letter["detail"]
        assert MARK not in json.dumps(letter["source"])
    metrics = worker.metrics()
    assert MARK not in metrics
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "DEBUG" in log  # the worker really logged at debug level
    assert MARK not in log
