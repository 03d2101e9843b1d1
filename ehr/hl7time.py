"""HL7 v2 DTM/DT values -> dates and aware datetimes (HL7 v2.5 ch. 2A: DTM
YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]). python-hl7's parse_datetime returns naive
values and float offsets; this is stricter and always aware.

Decision (issue 20 item 2; docs/integration-hl7.md "Times and dates"): the local zone is the
clinic's, the profile's `timezone`, and every time is emitted in that zone's offset at its
instant. A DTM without an offset is a wall time in that zone (HL7 v2.5.1 ch. 2A.22: no offset =
the sender's local time); one written with the clinic's own offset keeps it unchanged (the
normal case); one written in another offset (typically UTC, normalised by an interface engine)
is the same instant re-expressed in the clinic's zone. Never UTC, because the rules take
calendar dates from these values (signature within 14 or 30 days, CMS Pub. 100-02 Ch. 15 sec.
220.1.3) and count the clinic's days: 20:30 in Chicago is 2026-03-02T20:30:00-06:00, whether it
was written 202603022030-0600 or 202603030230+0000. Only ordering keys (MSH-7 as a part's
version, `to_utc`) are UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<frac>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)


def parse_dtm(text: str, zone: tzinfo) -> datetime:
    """An aware datetime; raises ValueError on a malformed or impossible value."""
    m = _DTM.match(text.strip())
    if not m:
        raise ValueError("not an HL7 DTM value")
    parts = m.groupdict()
    if parts["mo"] is None and parts["h"] is not None:
        raise ValueError("not an HL7 DTM value")
    micro = int((parts["frac"] or "0").ljust(6, "0")) if parts["frac"] else 0
    tz: tzinfo = zone
    if parts["tz"]:
        sign = -1 if parts["tz"][0] == "-" else 1
        hours, minutes = int(parts["tz"][1:3]), int(parts["tz"][3:5])
        if hours > 14 or minutes > 59:
            raise ValueError("UTC offset out of range")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    written = datetime(
        int(parts["y"]),
        int(parts["mo"] or 1),
        int(parts["d"] or 1),
        int(parts["h"] or 0),
        int(parts["mi"] or 0),
        int(parts["s"] or 0),
        micro,
        tzinfo=tz,
    )
    # A time written with an offset: the same instant on the clinic's clock (its offset kept
    # when it is the clinic's own); without one: the clinic's wall time. A date alone (no hour)
    # names a day, not an instant: as written.
    instant = parts["tz"] is not None and parts["h"] is not None
    if parts["h"] is not None and not instant:
        # Through UTC and back: a wall time the spring-forward change skips (02:30 on the
        # change day) becomes the zone's time at that instant (03:30, -05:00), so the value
        # always carries the offset the zone has then; a repeated hour is its first occurrence.
        written = written.astimezone(UTC)
    return fixed_offset(written.astimezone(zone) if parts["h"] is not None else written)


def fixed_offset(value: datetime) -> datetime:
    """The same wall time with the UTC offset in effect then as a fixed zone (a named zone's
    offset is resolved once, so the value serialises as written: 20:30-06:00). A wall time a DST
    change skips or repeats takes the offset before the change (PEP 495 fold=0)."""
    offset = value.utcoffset()
    assert offset is not None, "an aware datetime"
    return value.replace(tzinfo=UTC if not offset else timezone(offset))


def parse_dt_date(text: str) -> date:
    """The calendar date a DT/DTM value names, as written (no zone conversion). Needs at least
    YYYYMMDD. A DTM that may carry a time and another offset is dated with `local_date`."""
    m = _DTM.match(text.strip())
    if not m or m.group("d") is None:
        raise ValueError("not an HL7 date (YYYYMMDD...)")
    return date(int(m.group("y")), int(m.group("mo")), int(m.group("d")))


def local_date(text: str, zone: tzinfo) -> date:
    """The clinic's calendar date of a DT/DTM value: a DTM with a time and an offset is an
    instant, dated in the profile's zone (`20260303013000+0000` is 2026-03-02 in Chicago); a date,
    or a time without an offset (already the clinic's wall time), is the date as written."""
    m = _DTM.match(text.strip())
    if m and m.group("h") is not None and m.group("tz") is not None:
        return parse_dtm(text, zone).date()
    return parse_dt_date(text)


def to_utc(value: datetime) -> datetime:
    """For ordering keys only (a part's version): dates are never taken from the result."""
    return value.astimezone(UTC)
