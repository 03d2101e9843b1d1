"""The episode rules count the calendar date of a signature in the offset the visit event writes
it with (the sender's local day; issue 20 item 2, docs/integration-hl7.md "Times and dates"),
not its UTC date: EVENTS.md "day counts are calendar days of the dates, not hours". Each case is
one instant written twice, with the clinic's offset and in UTC, across a rule's day boundary:
CMS Pub. 100-02, Ch. 15, sec. 220.1.3 B (certification "dated in the 30 days following the first
day"; a verbal order "must be followed within 14 days by a signature"). Offsets: US Central is
UTC-6, UTC-5 from 2026-03-08 (15 U.S.C. 260a)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from compliance import Engine
from tests.factories import doc, episode_visit
from tests.unit.compliance.episode_helpers import day, flagged, run

CERT = "CERTIFICATION_MISSING"


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


def both_ways(local: datetime) -> tuple[str, str]:
    """One instant as the clinic wrote it and as UTC."""
    return local.isoformat(), local.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_certification_signed_2030_on_day_31_in_chicago_counts_on_day_31(
    engine: Engine,
) -> None:
    start = date(2026, 1, 5)  # day 31 = 2026-02-05, US Central standard time
    signed = datetime(2026, 2, 5, 20, 30, tzinfo=timezone(timedelta(hours=-6)))
    assert (signed.date() - start).days == 31
    local, utc = both_ways(signed)
    assert (local, utc) == ("2026-02-05T20:30:00-06:00", "2026-02-06T02:30:00Z")
    for written, expected in ((local, []), (utc, ["V-31"])):
        cert = doc("certification", author="MD", signed=None)
        cert["signed_at"] = written
        out = run(engine, visits(start, ("V-31", 31, [cert]), ("V-32", 32, [])))
        # On file from its signature date (sec. 220.1.3 D): day 31 locally, day 32 in UTC.
        assert flagged(out, CERT) == expected, written


def test_a_verbal_order_signed_2030_on_its_14th_day_is_timely(engine: Engine) -> None:
    start = date(2026, 3, 2)
    order = doc("certification", author="MD", signed=None, verbal=day(start, 20))
    signed = datetime(2026, 4, 5, 20, 30, tzinfo=timezone(timedelta(hours=-5)))  # CDT
    assert (signed.date() - date.fromisoformat(day(start, 20))).days == 14
    local, utc = both_ways(signed)
    for written, expected in ((local, []), (utc, ["V-35"])):
        late = doc("certification", author="MD", signed=None, verbal=day(start, 20))
        late["signed_at"] = written
        out = run(
            engine,
            visits(start, ("V-20", 20, [order]), ("V-34", 34, [late]), ("V-35", 35, [])),
        )
        # "followed within 14 days by a signature": 14 days locally, 15 by the UTC date.
        assert flagged(out, CERT) == expected, written
