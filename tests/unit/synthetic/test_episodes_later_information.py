"""The episode generator's later information (synthetic/visits.py, EpisodeGenerator; EVENTS.md
"VisitStatus v1"): what the feed sends later that resolves alerts it raised earlier.

- A corrected visit: first sent with a timed unit too many ("corrected_units"), re-sent later
  in the feed with the same visit_id, a new event_id and the units the CMS 8-minute rule gives
  its minutes (Pub. 100-04 Ch. 5 sec. 20.2), everything else the same ("correction").
- A delayed certification: visits past day 30 of a Medicare episode without a certification
  ("delayed_cert"), then a later visit of the episode with a signed certification that
  documents the reason for its delay (Pub. 100-02 Ch. 15 sec. 220.1.3 D) and whose interval,
  at most 90 calendar days (start + 89), covers them.
- `Record.releases`: the visits each record is meant to release from hold, which the demo sets
  against the status topic; checked here against `audit` (the alerts each event raises).
- The rest of the feed is what the same seed gave without these additions.

The 8-minute rule is written out here from the manual's table, not taken from compliance/units.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from cli.audit import run_audit
from compliance import Engine
from compliance.units import cms_split
from synthetic.visits import EpisodeGenerator, Record, Release, expected_rules

#: Pub. 100-04 Ch. 5 sec. 20.2: 1 unit >= 8 minutes through 22, 2 units 23-37, 3 units 38-52,
#: ...: every further 15 minutes, one more unit.
EIGHT_MINUTE_RULE = [(8, 22, 1), (23, 37, 2), (38, 52, 3), (53, 67, 4), (68, 82, 5)]
ERROR_RULES = {
    "CERTIFICATION_MISSING",
    "RECERTIFICATION_MISSING",
    "PLAN_OF_CARE_MISSING",
    "PROGRESS_REPORT_OVERDUE",
    "KX_MODIFIER_MISSING",
    "TIMED_UNITS_EXCEED_MINUTES",
}
WARNING_RULES = {"KX_MODIFIER_PREMATURE", "PROGRESS_REPORT_BY_ASSISTANT"}


def cms_units(total_minutes: int) -> int:
    for low, high, units in EIGHT_MINUTE_RULE:
        if low <= total_minutes <= high:
            return units
    assert total_minutes < 8, total_minutes
    return 0


@pytest.fixture(scope="module")
def feed() -> list[Record]:
    # A whole cohort of 60 patients (~2,000 visits, five months).
    return EpisodeGenerator(seed=29, patients=60, malformed_share=0.03).cohort()


def valid(feed: list[Record]) -> list[tuple[int, Record, dict[str, Any]]]:
    return [
        (i, r, orjson.loads(r.value))
        for i, r in enumerate(feed)
        if not r.intent.startswith("malformed:")
    ]


def test_a_corrected_visit_is_re_sent_later_with_its_units_right(feed: list[Record]) -> None:
    events = valid(feed)
    by_visit: dict[str, list[tuple[int, Record, dict[str, Any]]]] = defaultdict(list)
    for i, rec, event in events:
        by_visit[event["visit_id"]].append((i, rec, event))
    corrections = [(i, rec, e) for i, rec, e in events if rec.intent == "correction"]
    assert len(corrections) >= 10
    for i, rec, fixed in corrections:
        (j, first_rec, first), (k, _, _) = by_visit[fixed["visit_id"]]
        assert k == i and j < i  # the first event, then the correction later in the feed
        assert "corrected_units" in first_rec.intent.split("+")
        assert first["event_id"] != fixed["event_id"]
        assert rec.key == first_rec.key == fixed["patient_ref"].encode()
        # Re-sent later: other visits in between, and after it only visits of later dates.
        assert [e for n, _, e in events if j < n < i]
        after = [e for n, r, e in events if n > i and r.intent != "correction"]
        assert all(e["date_of_service"] > fixed["date_of_service"] for e in after)
        same = {k: v for k, v in fixed.items() if k not in ("event_id", "occurred_at", "services")}
        assert same == {k: first[k] for k in same}  # documents, dates, payer, totals: the same
        assert fixed["occurred_at"] > first["occurred_at"]
        # One line billed one unit more in the first event; nothing else about the lines.
        billed_first = [s["units"] for s in first["services"]]
        billed = [s["units"] for s in fixed["services"]]
        assert sum(billed_first) == sum(billed) + 1
        assert sum(a != b for a, b in zip(billed_first, billed, strict=True)) == 1
        assert [{**s, "units": 0} for s in first["services"]] == [
            {**s, "units": 0} for s in fixed["services"]
        ]
        # The correction: the units the CMS 8-minute rule gives the minutes, and a split of
        # them across the codes that the rule allows.
        timed = [s for s in fixed["services"] if "minutes" in s]
        assert timed
        assert fixed["total_timed_minutes"] == sum(s["minutes"] for s in timed)
        assert sum(s["units"] for s in timed) == cms_units(fixed["total_timed_minutes"])
        minutes: Counter[str] = Counter()
        units: Counter[str] = Counter()
        for s in timed:
            minutes[s["cpt"]] += s["minutes"]
            units[s["cpt"]] += s["units"]
        assert cms_split(minutes).allows(units)
        assert rec.releases == (
            Release(
                fixed["patient_ref"],
                fixed["visit_id"],
                frozenset({"TIMED_UNITS_EXCEED_MINUTES"}),
                "ready",
            ),
        )
    # Every first event with a unit too many has its correction in the cohort.
    firsts = [r for _, r, _ in events if "corrected_units" in r.intent.split("+")]
    assert len(firsts) == len(corrections)


def test_a_delayed_certification_covers_the_earlier_visits_it_releases(
    feed: list[Record],
) -> None:
    events = valid(feed)
    by_visit = {e["visit_id"]: (i, r, e) for i, r, e in events if r.intent != "correction"}
    carriers = [
        (i, r, e)
        for i, r, e in events
        if any("CERTIFICATION_MISSING" in x.rules for x in r.releases)
    ]
    assert len(carriers) >= 5
    released: set[str] = set()
    for i, rec, carrier in carriers:
        certs = [d for d in carrier["documents"] if d["kind"] == "certification"]
        delayed = [d for d in certs if d.get("delay_reason_documented") is True]
        assert len(delayed) == 1, certs
        (cert,) = delayed
        assert cert["signed_at"][:10] == carrier["date_of_service"]  # signed, on this visit
        assert cert["author_credential"] in ("MD", "DO", "NP", "PA")
        start = date.fromisoformat(cert["covers_from"])
        through = date.fromisoformat(cert["covers_through"])
        assert start < through <= start + timedelta(days=89)  # 90 calendar days at most
        assert carrier["payer"]["kind"] in ("medicare", "medicare_advantage")
        for x in rec.releases:
            j, held_rec, held = by_visit[x.visit_id]
            assert x.rules == {"CERTIFICATION_MISSING"}
            assert "delayed_cert" in held_rec.intent.split("+")
            assert j < i and held["patient_ref"] == x.patient_ref == carrier["patient_ref"]
            assert held["discipline"] == carrier["discipline"]
            assert held.get("episode_ref") == carrier.get("episode_ref")
            dos = date.fromisoformat(held["date_of_service"])
            # Past day 30 of the episode, before the certification, within its interval.
            assert dos - start > timedelta(days=30)
            assert start <= dos <= through and dos < date.fromisoformat(carrier["date_of_service"])
            # No certification of the episode was reported before the carrier.
            episode = [
                e
                for _, r, e in events
                if e["patient_ref"] == carrier["patient_ref"]
                and e["discipline"] == carrier["discipline"]
                and start <= date.fromisoformat(e["date_of_service"]) <= dos
            ]
            assert not [d for e in episode for d in e["documents"] if d["kind"] == "certification"]
            released.add(x.visit_id)
    # Every delayed_cert visit with no other error is released by its carrier.
    held_only = {
        e["visit_id"]
        for _, r, e in events
        if "delayed_cert" in r.intent.split("+") and not _other_errors(r)
    }
    assert held_only == released


def _other_errors(rec: Record) -> bool:
    left = "+".join(f for f in rec.intent.split("+") if f != "delayed_cert") or "clean"
    return bool(expected_rules("episodes", left) & ERROR_RULES)


def test_releases_are_the_alerts_the_feed_raised_and_resolves(feed: list[Record]) -> None:
    """What each release names was raised on the visit's earlier event (audit: the alert topic),
    and no error is left on it: its status goes from hold to ready (or review)."""
    out, err = io.BytesIO(), io.StringIO()
    run_audit(io.BytesIO(b"".join(r.value + b"\n" for r in feed)), out, err, engine=Engine())
    by_visit: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in out.getvalue().splitlines():
        a = orjson.loads(line)
        by_visit[(a["patient_ref"], a["visit_id"])].append(a)
    releases = [x for r in feed for x in r.releases]
    assert {rule for x in releases for rule in x.rules} == {
        "CERTIFICATION_MISSING",
        "TIMED_UNITS_EXCEED_MINUTES",
    }
    assert len({(x.patient_ref, x.visit_id) for x in releases}) == len(releases)
    for x in releases:
        # (A correction raises nothing: the visit's alerts are its first event's.)
        raised = {a["rule_id"] for a in by_visit[(x.patient_ref, x.visit_id)]}
        assert x.rules <= raised, (x, raised)
        still = raised - x.rules
        assert not still & ERROR_RULES, (x, still)
        assert x.to == ("review" if still & WARNING_RULES else "ready")


def test_deterministic_and_the_rest_of_the_feed_unchanged() -> None:
    def cohort(**shares: float) -> list[Record]:
        return EpisodeGenerator(seed=31, patients=40, malformed_share=0.03, **shares).cohort()

    feed, again = cohort(), cohort()
    assert feed == again
    without = cohort(delayed_cert_share=0, correction_share=0)
    assert not [r for r in without if r.releases or r.intent == "correction"]
    assert not [
        r for r in without if {"delayed_cert", "corrected_units"} & set(r.intent.split("+"))
    ]
    # The same records but for the corrections added and the visits and episodes they change.
    kept = [r for r in feed if r.intent != "correction"]
    assert [(r.key, r.intent.startswith("malformed:")) for r in kept] == [
        (r.key, r.intent.startswith("malformed:")) for r in without
    ]
    changed = {
        orjson.loads(r.value)["patient_ref"]
        for r in feed
        if r.intent != "clean"
        and not r.intent.startswith("malformed:")
        and {"delayed_cert", "corrected_units", "correction"} & set(r.intent.split("+"))
    }
    assert changed
    same = [
        (a, b)
        for a, b in zip(kept, without, strict=True)
        if not a.intent.startswith("malformed:") and a.key.decode() not in changed
    ]
    assert len(same) > 200
    assert all(a.value == b.value and a.intent == b.intent for a, b in same)
