"""Same-day state in the Faust table on the real broker: the claim-level rules that span visits
(NCCI pairs, MUEs with date-of-service adjudication, evaluation duplicates, add-on codes) give
exactly the alerts `therapy-compliance audit` gives for the same history, also when the worker
is SIGKILLed between a patient's visits of one day (state restored from the changelog) and when
a second worker takes over half the partitions (state moved with them)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.visit_status import VisitStatus
from tests.factories import line, payload, raw
from tests.integration.harness import (
    EXE,
    Topics,
    Worker,
    by_topic,
    consume,
    create_topics,
    produce,
)

pytestmark = pytest.mark.timeout(300)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ncci"
CROSS_VISIT = {
    "NCCI_PTP_CONFLICT",
    "MUE_EXCEEDED",
    "EVALUATION_DUPLICATE",
    "ADD_ON_CODE_WITHOUT_PRIMARY",
}

# Service combinations of one visit; several visits of one patient, NPI and day combine them
# into same-day findings (the PTP and MUE rows are the synthetic test rows of the fixtures,
# tests/fixtures/ncci/README.md; P.8 and P.1 are shipped policy data).
COMBOS: list[list[tuple[str, int, int | None]]] = [
    [("97161", 1, None)],  # PT evaluation
    [("97750", 1, 15)],  # with an evaluation the same day: NCCI P.8 (no bypass)
    [("97110", 2, 30)],  # MUE 97110 = 4, adjudicated per date of service
    [("97110", 3, 40)],
    [("97140", 1, 15)],  # 97140/97530: indicator 1, no modifier: conflict
    [("97530", 2, 30)],  # MUE 97530 = 3, per date of service
    [("97129", 1, 15)],  # the primary of 97130
    [("97130", 2, 30)],  # without 97129 that day: add-on without primary
    [("97164", 1, None)],  # a second PT evaluation that day: duplicate
]


def visit(
    patient: int, day: int, n: int, combo: list[tuple[str, int, int | None]], event: str = ""
) -> bytes:
    services = [
        line(str(i + 1), cpt, units, minutes) for i, (cpt, units, minutes) in enumerate(combo)
    ]
    timed = sum(m or 0 for _, _, m in combo)
    docs = []
    if any(cpt == "97750" for cpt, _, _ in combo):
        docs = [
            {
                "doc_id": f"D{n}",
                "kind": "written_report",
                "cpt": "97750",
                "signed_at": f"2026-03-0{day}T18:00:00Z",
            }
        ]
    return raw(
        payload(
            event_id=f"E-{patient}-{day}-{n}{event}",
            visit_id=f"V-{patient}-{day}-{n}",
            patient_ref=f"P-{patient}",
            date_of_service=f"2026-03-0{day}",
            occurred_at=f"2026-03-0{day}T19:00:00Z",
            services=services,
            total_timed_minutes=timed,
            total_treatment_minutes=timed + 5,
            documents=docs,
        )
    )


def same_day_history(patients: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Per patient and day 2-4 visits; the first visit of every patient-day is in the first
    part, the rest in the second, so every same-day finding of the second part needs state.
    About a third of the patient-days end with a correction of their first visit (other
    services): the later visits of that day are re-judged (EVENTS.md "VisitStatus v1")."""
    import random

    rng = random.Random(seed)
    first, second = [], []
    for p in range(patients):
        for day in (2, 3, 4):
            combos = rng.sample(COMBOS, rng.randrange(2, 5))
            for n, combo in enumerate(combos):
                rec = (f"P-{p}".encode(), visit(p, day, n, combo))
                (first if n == 0 else second).append(rec)
            if rng.random() < 0.35:
                other = rng.choice([c for c in COMBOS if c != combos[0]])
                second.append((f"P-{p}".encode(), visit(p, day, 0, other, event="-c")))
    return first, second


def ruleset_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    (d / "ncci" / "ptp").mkdir(parents=True)
    (d / "ncci" / "mue").mkdir(parents=True)
    shutil.copy(FIXTURES / "ccipra-v322r0-f4.TXT", d / "ncci" / "ptp")
    shutil.copy(FIXTURES / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv", d / "ncci" / "mue")
    return d


def audit_oracle(
    records: list[Any], rules: Path | None, tmp_path: Path, env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The alerts `therapy-compliance audit` gives for the history, in production order; `env`:
    TC_* variables audit reads as the worker does (the rule files, issue 20 item 11)."""
    return audit_run(records, rules, tmp_path, env)[0]


def audit_run(
    records: list[Any], rules: Path | None, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """`audit_oracle`'s alerts, and the status records of `audit --status-out` in order."""
    history = tmp_path / "history.jsonl"
    statuses = tmp_path / "statuses.jsonl"
    history.write_bytes(b"\n".join(v for _, v in records) + b"\n")
    ruleset = ["--ruleset", str(rules)] if rules is not None else []
    proc = subprocess.run(
        [EXE, "audit", *ruleset, "--status-out", str(statuses), str(history)],
        capture_output=True,
        timeout=120,
        check=True,
        env={**os.environ, **(env or {})},
    )
    alerts = {a["alert_id"]: a for a in map(orjson.loads, proc.stdout.splitlines())}
    return alerts, [orjson.loads(row) for row in statuses.read_bytes().splitlines()]


async def wait_took_over(b: Worker, timeout: float = 60) -> None:
    """Until worker `b` of a group is healthy with partitions (its state restored from the
    changelog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b.health_status() == 200 and orjson.loads(b.get("/health")[1])["assigned_partitions"]:
            return
        await asyncio.sleep(0.3)
    assert orjson.loads(b.get("/health")[1])["assigned_partitions"], b.tail()


def comparable(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alert.items() if k != "detected_at"}


async def collect(
    t: Topics, expected: dict[str, dict[str, Any]], visits: int, statuses: int = 0
) -> list[Any]:
    """The alert, checked and status records, once every expected alert, `visits` checked
    events and `statuses` distinct status records (visit, version) have arrived."""

    def done(recs: list[Any]) -> bool:
        ids = {orjson.loads(r.value)["alert_id"] for r in recs if r.topic == t.alerts}
        events = {orjson.loads(r.value)["event_id"] for r in recs if r.topic == t.checked}
        versions = {
            (s["visit_id"], s["version"])
            for s in (orjson.loads(r.value) for r in recs if r.topic == t.status)
        }
        return expected.keys() <= ids and len(events) >= visits and len(versions) >= statuses

    topics = [t.alerts, t.checked, *([t.status] if t.status else [])]
    return await consume(topics, until=done, timeout=120, idle_after=3)


def assert_same_alerts(
    recs: list[Any], t: Topics, expected: dict[str, dict[str, Any]]
) -> Counter[str]:
    alerts = by_topic(recs, t.alerts)
    got = {a["alert_id"]: a for a in alerts}
    assert got.keys() == expected.keys(), (
        f"missing {sorted(expected.keys() - got.keys())[:5]}, "
        f"unexpected {sorted(got.keys() - expected.keys())[:5]}"
    )
    for aid, alert in got.items():
        assert comparable(alert) == comparable(expected[aid]), aid
    return Counter(a["alert_id"] for a in alerts)


def assert_same_statuses(recs: list[Any], t: Topics, expected: list[dict[str, Any]]) -> int:
    """The status topic holds audit's status records, record for record, ignoring
    `updated_at` (EVENTS.md): each (visit, version) once with audit's content, a record
    repeated after a crash equal to the first, and each visit's versions in order on its
    partition (key = visit_id). Returns the number of repeats."""
    want = {(s["visit_id"], s["version"]): _untimed(s) for s in expected}
    assert len(want) == len(expected)  # audit publishes each (visit, version) once
    got: dict[tuple[str, int], dict[str, Any]] = {}
    last: dict[str, int] = {}
    repeats = 0
    for r in recs:
        if r.topic != t.status:
            continue
        VisitStatus.model_validate_json(r.value)
        st = _untimed(orjson.loads(r.value))
        key = (st["visit_id"], st["version"])
        assert r.key == st["visit_id"].encode()
        if key in got:
            assert got[key] == st, key  # a repeat after a crash is the same record
            repeats += 1
        else:
            # In order per visit, a re-sent older version only after a crash (never skipped).
            assert st["version"] <= last.get(st["visit_id"], 0) + 1, key
            got[key] = st
        last[st["visit_id"]] = max(last.get(st["visit_id"], 0), st["version"])
    assert got.keys() == want.keys(), (
        f"missing {sorted(want.keys() - got.keys())[:5]}, "
        f"unexpected {sorted(got.keys() - want.keys())[:5]}"
    )
    for key, st in got.items():
        assert st == want[key], key
    return repeats


def _untimed(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "updated_at"}


def check_oracle_rejudges(statuses: list[dict[str, Any]]) -> None:
    """The history makes audit re-judge visits (a status caused by another visit's event)."""
    causes = Counter(s["cause"]["kind"] for s in statuses)
    assert causes["related_visit"] > 0 and causes["correction"] > 0, causes


def check_oracle_covers_cross_visit_rules(expected: dict[str, dict[str, Any]]) -> None:
    rules = Counter(a["rule_id"] for a in expected.values())
    assert rules.keys() >= CROSS_VISIT, rules
    # ... and some of them only exist across visits: the visit alerted has one code of the pair
    cross = [
        a
        for a in expected.values()
        if a["rule_id"] == "NCCI_PTP_CONFLICT" and len(a["line_ids"]) == 1
    ]
    assert cross, "no NCCI conflict across two visits in the history"


async def wait_processed(worker: Worker, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while worker.processed() < n:
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_same_day_findings_survive_sigkill_identical_to_audit(
    make_worker: Any, tmp_path: Path, report: Any
) -> None:
    t = Topics.unique("state-kill")
    # The CMS files named by the variables (not a rule set directory): audit reads them as the
    # worker does (one loader, runtime/rules.py), so the same environment gives the same alerts.
    files = {
        "TC_NCCI_PTP_FILES": str(FIXTURES / "ccipra-v322r0-f4.TXT"),
        "TC_NCCI_MUE_FILES": str(FIXTURES / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv"),
    }
    first, second = same_day_history(patients=80, seed=11)
    expected, statuses = audit_run(first + second, None, tmp_path, env=files)
    check_oracle_covers_cross_visit_rules(expected)
    check_oracle_rejudges(statuses)
    await create_topics(t)
    worker: Worker = make_worker(t, **files)
    await produce(t.visits, first)
    worker.start()
    await wait_processed(worker, len(first) // 2)
    worker.stop(signal.SIGKILL)  # mid-stream, state of the first part partly in the changelog
    await produce(t.visits, second)
    worker.start()
    recs = await collect(t, expected, len(first) + len(second), len(statuses))
    counts = assert_same_alerts(recs, t, expected)
    repeats = assert_same_statuses(recs, t, expected=statuses)
    duplicates = sum(counts.values()) - len(counts)
    report(
        f"same-day state, SIGKILL: {len(expected)} alerts and {len(statuses)} statuses as "
        f"audit, {duplicates} duplicate alerts, {repeats} repeated statuses"
    )


@pytest.mark.asyncio
async def test_same_day_state_moves_with_its_partitions(
    make_worker: Any, tmp_path: Path, report: Any
) -> None:
    t = Topics.unique("state-move")
    rules = ruleset_dir(tmp_path)
    first, second = same_day_history(patients=80, seed=12)
    expected, statuses = audit_run(first + second, rules, tmp_path)
    check_oracle_rejudges(statuses)
    await create_topics(t)
    app_id = f"tc-move-{os.urandom(3).hex()}"
    a: Worker = make_worker(t, app_id=app_id, TC_RULESET_DIR=str(rules))
    a.start()
    await produce(t.visits, first)
    await wait_processed(a, len(first))
    b: Worker = make_worker(t, app_id=app_id, TC_RULESET_DIR=str(rules))
    b.start(wait_healthy=False)
    await wait_took_over(b)
    await produce(t.visits, second)
    recs = await collect(t, expected, len(first) + len(second), len(statuses))
    assert_same_alerts(recs, t, expected)
    assert_same_statuses(recs, t, statuses)
    assert b.processed() > 0  # the second part was split across both workers
    report(f"same-day state, rebalance: b processed {b.processed()} of {len(second)}")
