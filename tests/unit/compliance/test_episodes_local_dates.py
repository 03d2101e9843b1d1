"""The episode rules count the clinic's calendar date of a signature (issue 20 item 2, review
defect 2; docs/integration-hl7.md "Times and dates"): the EHR conversion emits every time in the
clinic's zone (the profile's `timezone`), also one the sender wrote in UTC, and the rules take
the calendar date in the offset the visit event carries (EVENTS.md "day counts are calendar
days of the dates, not hours"). Each case is one instant, written by the sender with the
clinic's offset and in UTC (as an interface engine normalises it), across a rule's day boundary:
CMS Pub. 100-02, Ch. 15, sec. 220.1.3 B (certification "dated in the 30 days following the first
day"; a verbal order "must be followed within 14 days by a signature"). The visit events are the
ones the converter builds (TXA-22 PPN.15, HL7 v2.5.1 ch. 9.6.1.22 / 2A.53, checked with hl7apy).
Offsets: US Central is UTC-6, UTC-5 from 2026-03-08 (15 U.S.C. 260a)."""

from __future__ import annotations

from datetime import date

import pytest

from compliance import Engine
from tests.factories import doc, episode_visit
from tests.unit.compliance.episode_helpers import day, flagged, run
from tests.unit.ehr.test_ehr_local_time import checked_251, config, dft, mdm, visit

CERT = "CERTIFICATION_MISSING"


def built_signed_at(ppn15: str) -> str:
    """signed_at of the visit event the converter builds, with a profile in America/Chicago,
    from the daily-note fixture signed (TXA-22 PPN.15) at `ppn15`."""
    raw = mdm(ppn15)
    assert checked_251(raw).txa.txa_22.ppn_15.ts_1.to_er7() == ppn15
    event = visit(config("America/Chicago"), dft(), raw)
    (document,) = event["documents"]
    signed = document["signed_at"]
    assert isinstance(signed, str)
    return signed


def visits(
    start: date, *later: tuple[str, int, list[dict[str, object]]]
) -> list[dict[str, object]]:
    # A progress report on every treatment visit keeps PROGRESS_REPORT_OVERDUE out of the way.
    ev = episode_visit("V-EVAL", start.isoformat(), evaluation=True, docs=[doc("plan_of_care")])
    return [
        ev,
        *(
            episode_visit(vid, day(start, n), docs=[doc("progress_report"), *docs])
            for vid, n, docs in later
        ),
    ]


# 2026-02-05 19:30 in Chicago (CST, UTC-6) = 2026-02-06 01:30 UTC; the control, a day later,
# is day 32 in Chicago too.
@pytest.mark.parametrize(
    ("written", "emitted", "expected"),
    [
        ("20260205193000-0600", "2026-02-05T19:30:00-06:00", []),
        ("20260206013000+0000", "2026-02-05T19:30:00-06:00", []),  # not 2026-02-06T01:30:00Z
        ("20260207013000+0000", "2026-02-06T19:30:00-06:00", ["V-31"]),  # control: day 32
    ],
)
def test_a_certification_signed_0130z_on_day_31_counts_on_the_clinics_day_31(
    engine: Engine, written: str, emitted: str, expected: list[str]
) -> None:
    start = date(2026, 1, 5)  # day 31 = 2026-02-05
    assert (date(2026, 2, 5) - start).days == 31
    signed = built_signed_at(written)
    assert signed == emitted
    cert = doc("certification", author="MD", signed=None)
    cert["signed_at"] = signed
    out = run(engine, visits(start, ("V-31", 31, [cert]), ("V-32", 32, [])))
    # On file from its signature date (sec. 220.1.3 D): signed on day 31, the clinic's day, it
    # is timely; signed on day 32 (as the 0130Z signature would count on its UTC date) V-31, the
    # visit past day 30 it was meant to cover, is flagged.
    assert flagged(out, CERT) == expected


# 2026-04-05 20:30 in Chicago (CDT, UTC-5) = 2026-04-06 01:30 UTC; the control is day 15.
@pytest.mark.parametrize(
    ("written", "emitted", "expected"),
    [
        ("20260405203000-0500", "2026-04-05T20:30:00-05:00", []),
        ("20260406013000+0000", "2026-04-05T20:30:00-05:00", []),
        ("20260407013000+0000", "2026-04-06T20:30:00-05:00", ["V-35"]),  # control: day 15
    ],
)
def test_a_verbal_order_signed_0130z_on_its_14th_day_is_timely(
    engine: Engine, written: str, emitted: str, expected: list[str]
) -> None:
    start = date(2026, 3, 2)
    order = doc("certification", author="MD", signed=None, verbal=day(start, 20))
    assert (date(2026, 4, 5) - date.fromisoformat(day(start, 20))).days == 14
    signed = built_signed_at(written)
    assert signed == emitted
    late = doc("certification", author="MD", signed=None, verbal=day(start, 20))
    late["signed_at"] = signed
    out = run(
        engine,
        visits(start, ("V-20", 20, [order]), ("V-34", 34, [late]), ("V-35", 35, [])),
    )
    # "followed within 14 days by a signature": 14 days on the clinic's calendar.
    assert flagged(out, CERT) == expected
