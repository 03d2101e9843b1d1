"""Issue 20 item 1 through the worker's join on the real broker: a recurring (series) account
(PV1-2 `R`, HL7 v2.5.1 table 0004 "recurring patient") billed on one PV1-19 over several days
gives one visit per date of service (FT1-4 for charges, TXA-4 for the note); day 2 does not
replace day 1, and a DFT for the account with day 2's lines corrects day 2 only. The oracle is
`therapy-compliance convert` on the same messages (the join offline) and the dates written in
the messages; the messages are checked with hl7apy in tests/unit/ehr/test_ehr_dft_series_credits.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Worker, produce
from tests.integration.test_ehr_stream import ehr_topics, offline_visit, visits_on
from tests.unit.ehr.test_ehr_dft_series_credits import Line, dft, mdm, strict

pytestmark = pytest.mark.timeout(240)

DAY1 = dft("S-D1", "20260302180000", [Line("1001", "20260302", "97110", "2")])
NOTE1 = mdm("S-M1", "20260302170000", "DOC-S1", "20260302", 30)
DAY2 = dft("S-D2", "20260303180000", [Line("1002", "20260303", "97110", "1")])
NOTE2 = mdm("S-M2", "20260303170000", "DOC-S2", "20260303", 14)
# The correction of day 2: a DFT for the account with day 2's lines (it replaces day 2 only).
FIX2 = dft("S-D3", "20260304090000", [Line("1003", "20260303", "97110", "2")])


@pytest.mark.asyncio
async def test_a_recurring_account_gives_one_visit_per_day_and_a_correction_replaces_its_day(
    make_worker: Any, tmp_path: Path
) -> None:
    for raw in (DAY1, NOTE1, DAY2, NOTE2, FIX2):
        strict(raw)  # HL7 v2.5.1 STRICT (hl7apy)
    t, env = ehr_topics("ehr-series")
    worker: Worker = make_worker(t, **env)
    worker.start()
    await produce(
        env["TC_TOPIC_HL7_INBOUND"],
        [(b"k", DAY1), (b"k", NOTE1), (b"k", DAY2), (b"k", NOTE2), (b"k", FIX2)],
    )
    visits = await visits_on(t, 3, idle=3)
    assert [(v["visit_id"], v["date_of_service"]) for v in visits] == [
        ("CLINIC01:A5001@2026-03-02", "2026-03-02"),
        ("CLINIC01:A5001@2026-03-03", "2026-03-03"),
        ("CLINIC01:A5001@2026-03-03", "2026-03-03"),
    ]
    day1, day2, corrected = visits
    assert [(s["cpt"], s["units"], s.get("minutes")) for s in day1["services"]] == [
        ("97110", 2, 30)
    ]
    assert [(s["units"], s.get("minutes")) for s in day2["services"]] == [(1, 14)]
    assert [(s["units"], s.get("minutes")) for s in corrected["services"]] == [(2, 14)]
    assert corrected["event_id"] != day2["event_id"]
    # The same visits as the offline join.
    assert day1 == offline_visit(DAY1, NOTE1, tmp=tmp_path)
    assert day2 == offline_visit(DAY1, NOTE1, DAY2, NOTE2, tmp=tmp_path)
    assert corrected == offline_visit(DAY1, NOTE1, DAY2, NOTE2, FIX2, tmp=tmp_path)
