"""`at_visit`'s date-driven kinds (notices._visit_due) read the judgement's segment when it is
the visit's whole episode group (notices._judged_whole), else segment the group for the one date.
On random histories delivered out of order, with visits of one date, corrections and episodes
after discharges or new evaluations, both give what `due_on` (the general path, for any date)
gives for the visit's group on its date, every field: the fast paths cannot silently diverge.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compliance import PatientHistory, notices
from compliance import engine as engine_module
from compliance.episodes.judge import EpisodeJudgement
from compliance.records import VisitRecord
from compliance.ruleset import RuleSet
from tests.factories import model
from tests.unit.compliance.test_notices_property import (
    AMOUNTS,
    NOW,
    STARTS,
    Visit,
    docs_of,
    engine,
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[date, list[tuple[str, Visit, bool]]]:
    """Visits of one patient (one or two disciplines; some of one date), in an arrival order
    that is mostly by date with some late ones, some delivered again with other documents (a
    correction)."""
    start = draw(st.sampled_from(STARTS))
    visits: list[tuple[str, Visit]] = []
    for discipline in draw(st.sampled_from([("PT",), ("OT",), ("PT", "OT")])):
        day = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(3, 30))):
            docs = draw(docs_of(discipline)) if draw(st.integers(1, 4)) == 1 else ()
            evaluation = not visits or draw(st.integers(0, 12)) == 0
            visit = Visit(day, discipline, evaluation, draw(AMOUNTS), docs)
            visits.append((f"V-{len(visits)}", visit))
            day += draw(st.sampled_from([0, 1, 1, 2, 3, 5, 9]))
    order = sorted(range(len(visits)), key=lambda i: visits[i][1].day)
    for _ in range(draw(st.integers(0, 4))):  # late arrivals
        i = draw(st.integers(0, len(order) - 1))
        j = draw(st.integers(i, len(order) - 1))
        order.insert(j, order.pop(i))
    out: list[tuple[str, Visit, bool]] = [(*visits[i], False) for i in order]
    for _ in range(draw(st.integers(0, 3))):  # corrections, after the visit's first event
        i = draw(st.integers(0, len(out) - 1))
        vid, visit, _ = out[i]
        docs = draw(st.one_of(st.just(()), docs_of(visit.discipline)))
        at = draw(st.integers(i + 1, len(out)))
        out.insert(at, (vid, replace(visit, docs=docs), True))
    return start, out


@given(deliveries())
@settings(
    max_examples=int(os.environ.get("NOTICES_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_at_visit_fast_path_equals_the_general_path(
    case: tuple[date, list[tuple[str, Visit, bool]]],
) -> None:
    start, items = case
    eng = engine()
    general = notices.at_visit

    def both(
        record: VisitRecord,
        judgement: EpisodeJudgement | None,
        seen: list[VisitRecord],
        rules: RuleSet,
    ) -> list[notices.Notice]:
        own = _own(record, seen)
        if own:
            key = notices.group_key(record)
            assert [*notices._of_group(seen, key, record.date_of_service), record] == own
            want = _reprs(notices.due_on(own, record.date_of_service, rules))
            assert _reprs(notices._visit_due(record, judgement, own, rules)) == want
            unjudged = replace(judgement, segment=None) if judgement is not None else None
            assert _reprs(notices._visit_due(record, unjudged, own, rules)) == want
            whole = notices._judged_whole(record, judgement, own)
            event("judgement's segment" if whole is not None else "group segmented")
        return general(record, judgement, seen, rules)

    history = PatientHistory()
    with patch.object(engine_module, "at_visit", both):
        for seq, (vid, visit, corrected) in enumerate(items, 1):
            data: dict[str, Any] = visit.payload("P-0", start, vid, True)
            if corrected:
                data["event_id"] += f"-c{seq}"
            out = eng.evaluate(model(data), NOW, history, seq)
            assert out.history is not None
            history = out.history


def _reprs(found: list[notices.Notice]) -> list[str]:
    return [repr(n) for n in found]  # every field, `observed` and `as_of` too


def _own(record: VisitRecord, seen: list[VisitRecord]) -> list[VisitRecord]:
    """The visit's group as at_visit reads it (by `group_key`, as `due_on` groups)."""
    if record.episode is None:
        return []
    day = record.date_of_service
    key = notices.group_key(record)
    own = [
        r
        for r in seen
        if r.date_of_service <= day and r.episode is not None and notices.group_key(r) == key
    ]
    own.append(record)
    return own
