"""Notices on record-level random histories (written by a review of 261c1bd): named and implicit
episodes, mixed disciplines in a named episode, records without a payer or without an episode
part, given starts, unopened segments, discharges, same-date visits, corrections, Medicare /
Medicare Advantage / commercial payers - shapes the visit-level strategies of
test_notices_property.py never build.

- `notices.leaves_dates` is exact: a new visit it passes changes no obligation `due_between`
  finds over the dates after it (the worker skips judging them again for a late visit);
- `due_between` (its candidate windows skip segments with no possible first day) equals a
  plain day-by-day loop of `due_on` over the records dated up to each day, with the cheap window
  test `_may_be_due` turned off (EVENTS.md "ComplianceNotice v1"; docs/rules.md "Notices")."""

from __future__ import annotations

import os
from datetime import date, timedelta
from unittest.mock import patch

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compliance import notices
from compliance.episodes.judge import judge
from compliance.notices import due_between, due_on, leaves_dates
from compliance.records import (
    INITIAL_EVALUATION,
    RE_EVALUATION,
    SERVICE,
    DocKind,
    DocRecord,
    EpisodePart,
    PayerRecord,
    Role,
    VisitRecord,
)
from compliance.state import history_of
from tests.unit.compliance.test_notices_property import engine

D0 = date(2026, 3, 2)
N = int(os.environ.get("NOTICES_EXAMPLES", "40"))
PAYERS = [
    PayerRecord("MEDICARE-B", "medicare"),
    PayerRecord("MA-1", "medicare_advantage"),
    PayerRecord("ACME", "commercial"),
    None,
]


def day(n: int) -> date:
    return D0 + timedelta(days=n)


@st.composite
def docs(draw: st.DrawFn, dos: int, discipline: str) -> tuple[DocRecord, ...]:
    out = []
    for _ in range(draw(st.integers(0, 2))):
        k = draw(st.integers(0, 6))
        d = day(dos)
        off = lambda: day(dos + draw(st.integers(-5, 20)))  # noqa: E731
        if k == 0:
            out.append(DocRecord(DocKind.CERTIFICATION, d, signed=off(), role=Role.OTHER))
        elif k == 1:
            signed = draw(st.one_of(st.none(), st.integers(0, 25)))
            out.append(
                DocRecord(
                    DocKind.CERTIFICATION,
                    d,
                    signed=day(dos + signed) if signed is not None else None,
                    verbal=d,
                )
            )
        elif k == 2:
            out.append(
                DocRecord(
                    DocKind.CERTIFICATION,
                    d,
                    signed=d,
                    covers_from=off(),
                    covers_through=day(dos + draw(st.integers(10, 100))),
                    delay_reason=draw(st.booleans()),
                )
            )
        elif k == 3:
            out.append(
                DocRecord(
                    DocKind.PLAN_OF_CARE,
                    d,
                    plan_start=d,
                    plan_end=day(dos + draw(st.integers(10, 120))),
                    sent=d if draw(st.booleans()) else None,
                )
            )
        elif k == 4:
            out.append(DocRecord(DocKind.REFERRAL, d, signed=d, discipline=discipline))
        elif k == 5:
            out.append(DocRecord(DocKind.DISCHARGE_SUMMARY, d, signed=d, role=Role.CLINICIAN))
        else:
            out.append(DocRecord(DocKind.PROGRESS_REPORT, d, signed=d, role=Role.CLINICIAN))
    return tuple(out)


@st.composite
def record(draw: st.DrawFn, vid: str, seq: int, first: int, plain: bool = False) -> VisitRecord:
    dos = draw(st.integers(-5, 130))
    discipline = draw(st.sampled_from(["PT", "OT"]))
    if not plain and draw(st.integers(0, 12)) == 0:
        part = None
    else:
        flags = SERVICE
        if draw(st.integers(0, 4)) == 0:
            flags |= INITIAL_EVALUATION
        if draw(st.integers(0, 8)) == 0:
            flags |= RE_EVALUATION
        ref = draw(st.sampled_from([None, None, "E1", "E2"]))
        start = None
        if not plain and draw(st.integers(0, 8)) == 0:
            start = day(dos + draw(st.integers(-20, 0)))
        ds = () if plain and draw(st.integers(0, 3)) else draw(docs(dos, discipline))
        part = EpisodePart(flags, ref, start, ds if not plain else ())
    payer = draw(st.sampled_from(PAYERS))
    return VisitRecord(
        vid,
        seq,
        day(dos),
        "1234567893",
        discipline,
        (),
        part,
        f"e-{vid}-{seq}",
        payer,
        first_seq=first,
    )


@st.composite
def histories(draw: st.DrawFn) -> list[VisitRecord]:
    out: list[VisitRecord] = []
    seq = 0
    for i in range(draw(st.integers(2, 25))):
        seq += 1
        r = draw(record(f"V{i}", seq, seq))
        out.append(r)
        if draw(st.integers(0, 8)) == 0:  # a correction, keeping its place
            seq += 1
            out.append(draw(record(f"V{i}", seq, r.first)))
    return out


def _obl(records: list[VisitRecord], a: date, b: date) -> set[tuple[str, str, str]]:
    return {(n.kind, n.episode, n.identity) for n in due_between(records, a, b, engine().rules)}


@given(histories(), st.data())
@settings(
    max_examples=N * 5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_leaves_dates_exact_on_record_histories(
    recs: list[VisitRecord], data: st.DataObject
) -> None:
    rules = engine().rules
    h = history_of(recs, 90, 400)
    seq = h.max_seq + 1
    v = data.draw(record("LATE", seq, seq, plain=True), label="late")
    mates = [r for r in recs if r.episode is not None]
    if mates and data.draw(st.integers(0, 3), label="join") != 0:
        m = data.draw(st.sampled_from(mates), label="mate")
        assert v.episode is not None and m.episode is not None
        ref = m.episode.episode_ref
        disc = m.discipline if ref is None or data.draw(st.booleans()) else v.discipline
        v = VisitRecord(
            v.visit_id,
            v.seq,
            v.date_of_service,
            v.npi,
            disc,
            (),
            EpisodePart(v.episode.flags, ref, None, ()),
            v.event_id,
            data.draw(st.sampled_from([*PAYERS[:3], m.payer])),
            first_seq=seq,
        )
    seen = list(h.seen_before(seq, v.visit_id))
    j = judge(v, h, seen, 400)
    lv = leaves_dates(v, j, seen, rules)
    after = h.apply(v, 90, 400)
    before_r = [vs[-1] for vs in h.visits]
    after_r = [vs[-1] for vs in after.visits]
    b = max(r.date_of_service for r in after_r) + timedelta(days=200)
    # The dates after the visit's date: those the worker would judge again for a late visit
    # (its own date's notices come with its judgement, at_visit).
    lo = v.date_of_service + timedelta(days=1)
    changed = _obl(before_r, lo, b) != _obl(after_r, lo, b)
    event(f"leaves={lv} changed={changed}")
    if lv:
        assert not changed, v


@given(histories())
@settings(
    max_examples=N * 5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_candidate_dates_cover_every_due_date(recs: list[VisitRecord]) -> None:
    rules = engine().rules
    h = history_of(recs, 90, 400)
    records = [vs[-1] for vs in h.visits]
    a = min(r.date_of_service for r in records) - timedelta(days=3)
    b = max(r.date_of_service for r in records) + timedelta(days=200)
    naive: dict[tuple[str, str, str], object] = {}
    d = a
    with patch.object(notices, "_may_be_due", lambda *_: True):
        while d <= b:
            upto = [r for r in records if r.date_of_service <= d]
            for n in due_on(upto, d, rules):
                naive.setdefault((n.kind, n.episode, n.identity), n)
            d += timedelta(days=1)
    found = {(n.kind, n.episode, n.identity): n for n in due_between(records, a, b, rules)}
    event(f"notices={bool(naive)}")
    assert set(found) == set(naive)
    for k, n in found.items():
        assert n == naive[k], k
