"""Every synthetic feed, in every mode, raises what it intends and nothing else (issue 18).

Feeds: independent visits and episodes of care (synthetic/visits.py), each in fixed mode and in
live mode with an injected clock (dates moved to end on its date), and the demo HL7 sender's
traffic (synthetic/hl7.py; one mode, fixed dates) joined into visit events by the offline join
(`convert`, ehr/convert.py). Each feed goes through `audit`'s in-process function (cli/audit.py
`run_audit`: the worker's checks, with per-patient state), and for every visit event the set of rules
its alerts name must be exactly the rules its intent names: every alert is explained by an
intended flaw, and every intended flaw raises its alert. The intent -> rules tables are written
here from the generators' documented mix (module and class docstrings), not taken from the
engine; that they agree with the generators' own tables is checked too.

Live mode is checked against fixed mode as well: the same seed gives the same records with
every date moved by one shift, and (while the shift stays within a calendar year, so the KX
thresholds are the same) the same alerts.
"""

from __future__ import annotations

import io
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.audit import run_audit
from cli.demo_hl7 import intended_alerts
from compliance import Engine
from ehr import convert_main, load_config
from synthetic import hl7 as synthetic_hl7
from synthetic import visits as synthetic_visits
from synthetic.hl7 import Hl7Message, Hl7VisitGenerator, demo_profile
from synthetic.visits import Clock, EpisodeGenerator, Record, VisitGenerator, local_now

# --- the intended mix, from the generators' documentation ------------------------------------

#: synthetic/visits.py, VisitGenerator: one flaw per flawed visit, and the rule it breaks.
VISIT_FLAWS = {
    "units_over": {"TIMED_UNITS_EXCEED_MINUTES"},  # more timed units than the minutes support
    "units_under": {"TIMED_UNITS_BELOW_MINUTES"},
    "misallocated": {"TIMED_UNITS_MISALLOCATED"},  # right total, wrong split (CMS)
    "minutes_missing": {"TIMED_MINUTES_MISSING"},
    "total_mismatch": {"TOTAL_TIMED_MINUTES_MISMATCH"},
    "treatment_missing": {"TREATMENT_TIME_INCONSISTENT"},
    "report_missing": {"WRITTEN_REPORT_MISSING"},  # 97750 "with written report", none on file
    "deleted_code": {"CODE_NOT_VALID_ON_DATE"},
    "untimed_units": {"UNTIMED_CODE_MULTIPLE_UNITS"},
    "modifier_missing": {"THERAPY_MODIFIER_MISSING"},
    "unknown_code": {"UNKNOWN_CODE"},
}
#: synthetic/visits.py, EpisodeGenerator: flaws set on the visits that must raise them.
EPISODE_FLAWS = {
    "late_report": {"PROGRESS_REPORT_OVERDUE"},
    "assistant_report": {"PROGRESS_REPORT_OVERDUE", "PROGRESS_REPORT_BY_ASSISTANT"},
    "no_plan": {"PLAN_OF_CARE_MISSING"},
    "late_cert": {"CERTIFICATION_MISSING"},
    # No certification by day 30 when checked; a later visit's certification, signed with the
    # reason for its delay, resolves it (a status, not an alert: the alert was raised once).
    "delayed_cert": {"CERTIFICATION_MISSING"},
    "no_recert": {"RECERTIFICATION_MISSING"},
    "kx_missing": {"KX_MODIFIER_MISSING"},
    "kx_premature": {"KX_MODIFIER_PREMATURE"},
    # A visit's first event with a timed unit too many; its correction (same visit_id, new
    # event_id, units right), re-sent later in the feed, raises nothing.
    "corrected_units": {"TIMED_UNITS_EXCEED_MINUTES"},
    "correction": set(),
    "start_unseen": set(),  # the episode's first visits never sent: its rules not evaluated
}
#: synthetic/hl7.py: a corrected DFT's first version is checked before the correction arrives.
HL7_FLAWS = {
    "units_over": {"TIMED_UNITS_EXCEED_MINUTES"},
    "minutes_missing": {"TIMED_MINUTES_MISSING"},  # neither the note nor PR1-7 states them
    "no_documentation": {"DOCUMENTATION_NOT_RECEIVED"},  # charges alone, after the join's wait
    "resent_correction": {"TIMED_UNITS_EXCEED_MINUTES"},
    "resent_correction_untimed": {"UNTIMED_CODE_MULTIPLE_UNITS"},  # SLP: untimed codes only
}

SEEDS = (3, 11)
#: Live mode's injected clocks: the issue's date, and one whose episodes straddle 2024/2025
#: (KX thresholds of two years; the referral exception starts on 2025-01-01).
TODAY = date(2026, 12, 7)
CLOCKS = {
    "fixed": None,
    "live 2026-12-07": datetime(2026, 12, 7, 15, 30, tzinfo=UTC),
    "live 2025-03-01": datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
    # A clinic's evening west of UTC: its date is a day behind UTC's (occurred_at is UTC).
    "live 2026-12-07 22:30 -08:00": datetime(
        2026, 12, 7, 22, 30, tzinfo=timezone(-timedelta(hours=8))
    ),
}


def expected(table: dict[str, set[str]], intent: str) -> set[str]:
    if intent == "clean":
        return set()
    return set().union(*(table[flaw] for flaw in intent.split("+")))


def test_the_tables_here_are_the_generators_documented_ones() -> None:
    assert {k: set(v) for k, v in synthetic_visits.FLAW_RULES.items()} == VISIT_FLAWS
    assert {k: set(v) for k, v in synthetic_visits.EPISODE_FLAWS.items()} == EPISODE_FLAWS
    assert {k: set(v) for k, v in synthetic_hl7.FLAW_RULES.items()} == HL7_FLAWS
    for mode, table in (("visits", VISIT_FLAWS), ("episodes", EPISODE_FLAWS)):
        for flaw, rules in table.items():
            assert synthetic_visits.expected_rules(mode, flaw) == rules
        assert synthetic_visits.expected_rules(mode, "clean") == set()
        assert synthetic_visits.expected_rules(mode, "malformed:truncated") == set()
    assert synthetic_visits.expected_rules("episodes", "kx_premature+no_plan") == {
        "KX_MODIFIER_PREMATURE",
        "PLAN_OF_CARE_MISSING",
    }


# --- feeds ---------------------------------------------------------------------------------------


def clock_of(at: datetime | None) -> Clock:
    """A stopped clock at `at` (live mode), or none: fixed mode."""
    if at is None:
        return local_now  # unused: fixed mode reads no clock
    moment = at
    return lambda: moment


def visits_feed(seed: int, at: datetime | None) -> list[Record]:
    live, clock = at is not None, clock_of(at)
    return list(VisitGenerator(seed, malformed_share=0.05, live=live, clock=clock).records(500))


def episodes_feed(seed: int, at: datetime | None) -> list[Record]:
    # Small cohorts (25 patients, ~700 visits each): whole episodes in a few hundred records,
    # and the second cohort's start too.
    live, clock = at is not None, clock_of(at)
    gen = EpisodeGenerator(seed, patients=25, malformed_share=0.05, live=live, clock=clock)
    return list(gen.records(900))


def audit(lines: list[bytes]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out, err = io.BytesIO(), io.StringIO()
    run_audit(io.BytesIO(b"".join(x + b"\n" for x in lines)), out, err, engine=Engine())
    alerts = [orjson.loads(x) for x in out.getvalue().splitlines()]
    summary = orjson.loads(err.getvalue().splitlines()[-1])["summary"]
    return alerts, summary


def rules_by_visit(alerts: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each visit's rules; one alert per visit event and rule, so that the alerts intended by
    rule (what demo-feed and demo-hl7 print) are the alerts raised by rule."""
    out: dict[str, set[str]] = defaultdict(set)
    per_event = Counter((a["event_id"], a["rule_id"]) for a in alerts)
    assert max(per_event.values(), default=1) == 1
    for a in alerts:
        out[a["visit_id"]].add(a["rule_id"])
    return out


def check_intents(
    records: list[Record], table: dict[str, set[str]]
) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Audit the records; every valid visit event's rules are exactly its intent's (by event: a
    corrected visit's events share its visit_id, and each has its intent). Returns the flaws
    seen and the alerts."""
    alerts, summary = audit([r.value for r in records])
    rules_by_visit(alerts)  # one alert per event and rule
    got: dict[str, set[str]] = defaultdict(set)
    for a in alerts:
        got[a["event_id"]].add(a["rule_id"])
    seen: Counter[str] = Counter()
    wrong = []
    for rec in records:
        if rec.intent.startswith("malformed:"):
            seen["malformed"] += 1
            continue
        event = orjson.loads(rec.value)
        have = got.pop(event["event_id"], set())
        if have != expected(table, rec.intent):
            wrong.append((event["visit_id"], rec.intent, sorted(have)))
        seen.update(rec.intent.split("+"))
    assert wrong == [], f"{len(wrong)} visits raise other than they intend: {wrong[:10]}"
    assert got == {}, f"alerts on visits the feed did not send: {dict(got)}"
    assert summary["invalid_lines"] == seen["malformed"]  # each malformed record, a dead letter
    return seen, alerts


# --- every alert explained, every flaw raised ------------------------------------------------


@pytest.mark.parametrize("clock", list(CLOCKS))
def test_visits_feed_raises_what_it_intends(clock: str) -> None:
    seen: Counter[str] = Counter()
    for seed in SEEDS:
        records = visits_feed(seed, CLOCKS[clock])
        seen += check_intents(records, VISIT_FLAWS)[0]
    assert set(VISIT_FLAWS) <= set(seen), seen  # every kind of flaw was made and raised
    assert seen["malformed"] > 20 and 0.6 < seen["clean"] / 1000 < 0.75


@pytest.mark.parametrize("clock", list(CLOCKS))
def test_episodes_feed_raises_what_it_intends(clock: str) -> None:
    seen: Counter[str] = Counter()
    for seed in SEEDS:
        records = episodes_feed(seed, CLOCKS[clock])
        seen += check_intents(records, EPISODE_FLAWS)[0]
    assert set(EPISODE_FLAWS) <= set(seen), seen
    assert seen["malformed"] > 50


def hl7_events(
    tmp_path: Path, seed: int, visits: int
) -> tuple[list[bytes], dict[str, str], list[list[Hl7Message]]]:
    """The sender's traffic (what `demo-hl7` sends, in its order) through the offline join with
    the demo profile (ops/demo --hl7 gives the gateway and the worker the same), and each
    visit's intent."""
    config = load_config(b"demo-only-patient-key-not-a-secret")
    config = config.model_copy(update={"profile": demo_profile(config.profile)})
    sent = list(Hl7VisitGenerator(seed=seed).visits(visits))
    path = tmp_path / f"hl7-{seed}.txt"
    path.write_bytes(b"".join(m.raw + b"\n" for v in sent for m in v))
    out, err = io.BytesIO(), io.StringIO()
    assert convert_main("hl7", str(path), out, err, config) == 0, err.getvalue()
    intents = {
        v[0].visit: next(m.intent for m in v if not m.intent.endswith(":first")) for v in sent
    }
    return out.getvalue().splitlines(), intents, sent


def test_hl7_sender_raises_what_it_intends(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()
    for seed in SEEDS:
        events, intents, sent = hl7_events(tmp_path, seed, 250)
        alerts, summary = audit(events)
        assert summary["invalid_lines"] == 0
        # What demo-hl7 prints as intended, when every message was stored, is what is raised.
        assert intended_alerts(sent, sent) == (sorted(summary["alerts_by_rule"].items()), 250)
        got = rules_by_visit(alerts)
        wrong = [
            (visit, intent, sorted(got.get(visit, set())))
            for visit, intent in intents.items()
            if got.get(visit, set()) != expected(HL7_FLAWS, intent)
        ]
        assert wrong == [], f"{len(wrong)} visits raise other than they intend: {wrong[:10]}"
        assert set(got) <= set(intents)
        seen.update(intents.values())
    assert set(HL7_FLAWS) <= set(seen), seen
    assert 0.6 < seen["clean"] / 500 < 0.8


# --- live mode is fixed mode moved -----------------------------------------------------------


def _dates(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) for every leaf of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _dates(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _dates(v, f"{path}[{i}]")
    else:
        yield path, value


DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})")


def _moved(fixed: Any, shift: timedelta) -> Any:
    """A leaf of a fixed-mode event as live mode must write it: dates and times moved by
    `shift`, a trailing YYYYMMDD of an episode reference too, anything else the same."""
    if not isinstance(fixed, str):
        return fixed
    if DAY.fullmatch(fixed):
        return (date.fromisoformat(fixed) + shift).isoformat()
    if MOMENT.fullmatch(fixed):
        text = (datetime.fromisoformat(fixed.replace("Z", "+00:00")) + shift).isoformat()
        return text.replace("+00:00", "Z") if fixed.endswith("Z") else text
    if fixed.startswith("EP-"):
        prefix, day = fixed.rsplit("-", 1)
        return f"{prefix}-{datetime.strptime(day, '%Y%m%d').date() + shift:%Y%m%d}"
    return fixed


@pytest.mark.parametrize("feed", [visits_feed, episodes_feed], ids=["visits", "episodes"])
def test_live_mode_is_fixed_mode_with_every_date_moved(
    feed: Callable[[int, datetime | None], list[Record]],
) -> None:
    at = CLOCKS["live 2026-12-07"]
    assert at is not None
    fixed, live = feed(SEEDS[0], None), feed(SEEDS[0], at)
    assert [r.intent for r in live] == [r.intent for r in fixed]
    assert [r.key for r in live] == [r.key for r in fixed]
    valid = [(f, v) for f, v in zip(fixed, live, strict=True) if not f.intent.startswith("mal")]
    shifts = set()
    for f, v in valid:
        a, b = orjson.loads(f.value), orjson.loads(v.value)
        shift = date.fromisoformat(b["date_of_service"]) - date.fromisoformat(a["date_of_service"])
        shifts.add(shift)
        assert b.pop("occurred_at") == "2026-12-07T15:30:00Z"  # the clock's time: now
        del a["occurred_at"]
        assert [(p, _moved(x, shift)) for p, x in _dates(a)] == list(_dates(b)), b["visit_id"]
    # One shift per cohort (episodes: the second cohort ends on the clock's date too).
    assert len(shifts) <= 2
    newest = max(orjson.loads(v.value)["date_of_service"] for _, v in valid)
    assert newest <= TODAY.isoformat()
    # Same calendar year in both modes (2026): the same alerts, on the same visits and lines.
    fixed_alerts = audit([r.value for r in fixed])[0]
    live_alerts = audit([r.value for r in live])[0]

    def key(a: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
        return a["visit_id"], a["rule_id"], tuple(a["line_ids"])

    assert sorted(map(key, live_alerts)) == sorted(map(key, fixed_alerts))
    assert len(fixed_alerts) > 20


def test_the_visit_feeds_live_window_ends_on_the_clocks_date() -> None:
    at = CLOCKS["live 2025-03-01"]
    assert at is not None
    days = {
        orjson.loads(r.value)["date_of_service"]
        for r in visits_feed(SEEDS[1], at)
        if not r.intent.startswith("malformed:")
    }
    assert max(days) == "2025-03-01" and min(days) >= "2025-01-01"  # 60 days ending on it
    moved = [
        orjson.loads(r.value)
        for r in episodes_feed(SEEDS[1], at)
        if not r.intent.startswith("malformed:")
    ]
    assert max(v["date_of_service"] for v in moved) == "2025-03-01"
    assert min(v["date_of_service"] for v in moved) < "2025-01-01"  # the episodes straddle it
