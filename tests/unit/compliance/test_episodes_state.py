"""The patient history's episode state (compliance/state.py, state_codec.py, retention.py):
format 2 round trip, format 1 upgrade, horizons and folding, and the size bound for a heavy
patient (3 visits a week for a year). EVENTS.md "v1 additions"; KX per calendar year: CMS Pub.
100-04, Ch. 5, sec. 10.3."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from compliance import Engine, EpisodeStatus, PatientHistory
from compliance.retention import MAX_KEPT_PAST_HORIZON
from compliance.state import StateFormatError
from compliance.state_layout import encode_visit, visit_key
from tests.factories import doc, episode_visit, line, model, other_visit
from tests.unit.compliance.episode_helpers import NOW, day, rules, run

#: Written by the format-1 engine (commit 81e8e21, compliance/state.py `to_bytes`): a visit,
#: a corrected visit (two versions) and a visit with no billed line.
FORMAT_1 = (
    b'{"format":1,"visits":[[{"d":"2026-03-02","id":"V-A","l":[["1","97163",1,["GP"],"120.00"]],'
    b'"n":"1234567893","p":"PT","s":1}],[{"d":"2026-03-04","id":"V-B","l":[["1","97110",2,'
    b'["GP","KX"]],["2","97140",1,["GP"],"30.11"]],"n":"1234567893","p":"PT","s":2},{"d":'
    b'"2026-03-04","id":"V-B","l":[["1","97110",1,["GP"]]],"n":"1234567893","p":"PT","s":3}],'
    b'[{"d":"2026-03-05","id":"V-C","l":[],"n":"1245319599","p":"OT","s":4}]]}'
)


def heavy_patient(start: date, weeks: int) -> list[dict[str, Any]]:
    """A Medicare PT patient seen Mon/Wed/Fri for `weeks` weeks, billed correctly: 8-week
    episodes (evaluation with plan, certification and referral; 97110 x2 + 97140 x1 a visit;
    a progress report every 9th visit; KX once over the threshold; discharge), the next
    episode's evaluation the Monday after."""
    visits: list[dict[str, Any]] = []
    accrued: dict[int, int] = {}  # cents per year
    threshold = {2024: 233_000, 2025: 241_000, 2026: 248_000}
    n = 0
    week = 0
    while week < weeks:
        ep_start = start + timedelta(weeks=week)
        for w in range(min(8, weeks - week)):
            for k, offset in enumerate((0, 2, 4)):
                dos = ep_start + timedelta(weeks=w, days=offset)
                n += 1
                vid = f"V-{n:09d}"
                first = w == 0 and k == 0
                last = w == 7 and k == 2
                amount = 10_000 if first else 9_221
                kx = accrued.get(dos.year, 0) + amount > threshold[dos.year]
                docs = []
                if first:
                    docs = [
                        doc("referral", author="MD", discipline="PT"),
                        doc(
                            "plan_of_care",
                            plan_start=dos.isoformat(),
                            plan_end=(dos + timedelta(days=60)).isoformat(),
                            sent=dos.isoformat(),
                        ),
                        doc("certification", author="MD"),
                    ]
                    v = episode_visit(vid, dos.isoformat(), evaluation=True, docs=docs, kx=kx)
                else:
                    if (w * 3 + k) % 9 == 0 or last:
                        docs.append(doc("progress_report"))
                    if last:
                        docs.append(doc("discharge_summary"))
                    mods = ["GP", "KX"] if kx else ["GP"]
                    v = episode_visit(
                        vid,
                        dos.isoformat(),
                        docs=docs,
                        services=[
                            line("1", "97110", 2, 30, mods, allowed_amount="62.10"),
                            line("2", "97140", 1, 15, mods, allowed_amount="30.11"),
                        ],
                    )
                    v["total_timed_minutes"] = 45
                    v["total_treatment_minutes"] = 52
                accrued[dos.year] = accrued.get(dos.year, 0) + amount
                visits.append(v)
        week += 8
    return visits


def test_heavy_patient_size_is_bounded_and_the_feed_is_clean(engine: Engine) -> None:
    # One year: 3 visits a week. The serialised history stays under 34 KB (format 2, measured
    # ~30 KB with the visit status fields; docs/rules.md "State"), and a second year does not
    # make it grow (400-day horizon).
    visits = heavy_patient(date(2025, 3, 3), 52)
    out = run(engine, visits)
    assert sum(len(o.alerts) for o in out) == 0, [rules(o) for o in out if o.alerts][:3]
    h1 = out[-1].history
    assert h1 is not None
    one_year = len(h1.to_bytes())
    assert 10_000 < one_year < 34_000, one_year
    # Format 3 (the worker's table: a key per visit; docs/rules.md "Size"): ~24 KB in all,
    # ~156 bytes a visit on average (~110 before the visit status's event id, payer, first seq
    # and status; one with its documents ~310), a 22-character patient_ref in each key.
    patient = b"P-0123456789abcdef0123"
    per_visit = [
        len(visit_key(patient, vs[0].visit_id)) + len(encode_visit(vs)) for vs in h1.visits
    ]
    assert sum(per_visit) < 28_000 and max(per_visit) < 400, (sum(per_visit), max(per_visit))
    two_years = heavy_patient(date(2024, 3, 4), 104)
    h2 = run(engine, two_years)[-1].history
    assert h2 is not None
    assert len(h2.to_bytes()) < one_year * 1.2
    assert len(h2) <= 3 * 58 + MAX_KEPT_PAST_HORIZON  # ~400 days of visits + kept records


def test_round_trip_is_exact_and_deterministic(engine: Engine) -> None:
    visits = heavy_patient(date(2025, 11, 3), 20)
    h = run(engine, visits)[-1].history
    assert h is not None
    raw = h.to_bytes()
    back = PatientHistory.from_bytes(raw)
    # Format 2 (read and upgraded, no longer written by the worker) does not carry the ids of
    # the notices published; format 3 keeps them in the head (test_state_layout.py).
    assert h.sent
    assert back == dataclasses.replace(h, sent=()) and back.to_bytes() == raw
    again = run(engine, visits)[-1].history
    assert again is not None and again.to_bytes() == raw  # same events, same bytes
    body = orjson.loads(raw)
    assert body["format"] == 2
    assert raw == orjson.dumps(body, option=orjson.OPT_SORT_KEYS)  # keys sorted


def test_format_1_is_upgraded_without_losing_its_records(engine: Engine) -> None:
    h = PatientHistory.from_bytes(FORMAT_1)
    assert [len(h.versions(v)) for v in ("V-A", "V-B", "V-C")] == [1, 2, 1]
    [b2, b3] = h.versions("V-B")
    assert [ln.cpt for ln in b2.lines] == ["97110", "97140"] and b2.lines[
        1
    ].allowed_amount == "30.11"
    assert b3.lines[0].modifiers == ("GP",) and h.versions("V-A")[0].npi == "1234567893"
    assert all(vs[-1].episode is None for vs in h.visits)  # format 1 had no episode data
    # The same-day rules still see the upgraded records: a second PT evaluation that day.
    again = model(other_visit("V-D", [line("1", "97164", 1)]))
    assert "EVALUATION_DUPLICATE" in [f.rule_id for f in engine.check(again, h, seq=10)]
    # The episode rules do not read them: the episode's start stays unseen (never guessed).
    o = engine.evaluate(model(episode_visit("V-E", "2026-03-06")), NOW, h, 11)
    assert o.episode_status is EpisodeStatus.START_UNSEEN
    assert o.history is not None
    upgraded = o.history.to_bytes()
    assert orjson.loads(upgraded)["format"] == 2
    assert PatientHistory.from_bytes(upgraded) == o.history


def test_format_1_lines_count_as_unknown_in_the_kx_accrual(engine: Engine) -> None:
    # Format 1 recorded neither payer nor amounts: its PT lines may belong to the 2026 accrual,
    # so a premature KX names them rather than assuming they are zero.
    h = PatientHistory.from_bytes(FORMAT_1)
    o = engine.evaluate(model(episode_visit("V-E", "2026-03-06", kx=True)), NOW, h, 11)
    [premature] = [a for a in o.alerts if a.rule_id == "KX_MODIFIER_PREMATURE"]
    # V-A's line and the current version of V-B's (one line); V-C is OT with none.
    assert premature.body["observed"]["unknown_amount_lines"] == 2
    names = premature.body["observed"]["unknown_amount"]
    assert {"visit_id": "V-A", "line_ids": ["1"]} in names


def test_unknown_or_bad_formats_are_clear_errors() -> None:
    with pytest.raises(StateFormatError, match="format 3 is not supported"):
        PatientHistory.from_bytes(b'{"format": 3, "visits": []}')
    with pytest.raises(StateFormatError, match="bad record"):
        PatientHistory.from_bytes(b'{"format": 2, "visits": [[{"id": "V", "s": 1}]]}')
    with pytest.raises(StateFormatError, match="bad record"):
        PatientHistory.from_bytes(
            b'{"format": 2, "visits": [[{"id": "V", "s": 1, "d": "2026-01-01", "p": "PT",'
            b' "f": 1, "o": [{"k": "zz"}]}]]}'
        )


# --- horizons ------------------------------------------------------------------------------


D0 = date(2026, 1, 5)


def test_same_day_part_is_dropped_after_horizon_days_and_the_episode_part_kept(
    engine: Engine,
) -> None:
    visits = [episode_visit("V-1", D0.isoformat()), episode_visit("V-2", day(D0, 91))]
    h = run(engine, visits)[-1].history
    assert h is not None
    [old] = h.versions("V-1")
    assert old.lines == () and old.npi == "" and old.episode is not None
    assert h.versions("V-2")[0].lines  # within 90 days of the newest


def test_past_the_episode_horizon_records_fold_into_kx_totals(engine: Engine) -> None:
    # 2025 visits fold into 2025 totals once 400 days old; a late 2025 visit arriving after
    # that is beyond the horizon: not judged by the episode or KX rules.
    y25 = [episode_visit(f"V-{i}", day(date(2025, 1, 6), i), amount="500.00") for i in range(4)]
    later = episode_visit("V-NEW", "2026-02-15")  # 405 days after 2025-01-06
    h = run(engine, [*y25, later])[-1].history
    assert h is not None
    assert [v[0].visit_id for v in h.visits] == ["V-NEW"]
    [fold] = h.kx_folds
    assert (fold.year, fold.bucket, fold.cents) == (2025, "PT_SLP", 200_000)
    assert h.folded_through == date(2025, 1, 9)
    late = engine.evaluate(model(episode_visit("V-LATE", "2025-01-07")), NOW, h, 99)
    assert late.episode_status is EpisodeStatus.BEYOND_HORIZON
    # A visit of 2025 inside the horizon still sees the folded 2025 accrual (2,000.00 +
    # 500.00 > 2,410.00).
    dec = engine.evaluate(model(episode_visit("V-DEC", "2025-12-30", amount="500.00")), NOW, h, 100)
    assert "KX_MODIFIER_MISSING" in [a.rule_id for a in dec.alerts]
    # Totals of years before the previous one are dropped.
    h27 = run(engine, [episode_visit("V-27", "2027-01-04")], h)[-1].history
    assert h27 is not None and [f.year for f in h27.kx_folds] == []


def test_an_open_long_episode_keeps_what_it_needs_past_the_horizon(engine: Engine) -> None:
    # A 17-month maintenance episode, weekly visits, reports every 9 weeks, recertified every
    # 84 days: past the 400-day horizon (days 0-124 here) its evaluation and certifications
    # stay; plain visits are dropped.
    start = date(2025, 1, 6)
    visits = [
        episode_visit(
            "V-EV",
            start.isoformat(),
            evaluation=True,
            docs=[doc("plan_of_care"), doc("certification", author="MD")],
        )
    ]
    for w in range(1, 76):
        docs = [doc("progress_report")] if w % 9 == 0 else []
        if w % 12 == 0:
            docs.append(doc("certification", author="MD", covers_from=day(start, 7 * w)))
        visits.append(episode_visit(f"V-{w:03d}", day(start, 7 * w), docs=docs, amount="10.00"))
    out = run(engine, visits)
    assert [rules(o) for o in out if rules(o)] == []
    assert all(o.episode_status is EpisodeStatus.EVALUATED for o in out)
    h = out[-1].history
    assert h is not None
    ids = {vs[0].visit_id for vs in h.visits}
    assert "V-EV" in ids  # the first record: the start stays seen
    assert "V-012" in ids  # a certification record past the horizon (day 84)
    assert not {"V-001", "V-009", "V-013"} & ids  # plain visits and an old report: dropped


def test_engine_rejects_an_episode_horizon_shorter_than_the_same_day_horizon() -> None:
    with pytest.raises(ValueError, match="episode_horizon_days"):
        Engine(horizon_days=90, episode_horizon_days=30)
