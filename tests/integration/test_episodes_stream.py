"""Episodes of care in the Faust table on the real broker (issue 11): a multi-episode feed of many
patients (synthetic/visits.py EpisodeGenerator: evaluations, plans, certifications, progress
reports, discharges, KX, with flaws) gives exactly the alerts, ids included, of an uninterrupted
run (`therapy-compliance audit` over the same history, which keeps the episode state in memory),
also when the worker is SIGKILLed in the middle of the feed (state restored from the changelog,
records after the last commit re-processed) and when a second worker takes over half the
partitions (the state moves with them).

The oracle for the rules themselves is the manual's text, in tests/unit/compliance/test_episodes_*.py; these
tests pin that the stream's state handling neither loses nor duplicates nor reorders anything the
rules see."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from synthetic.visits import EpisodeGenerator
from tests.integration.harness import Topics, Worker, create_topics, produce
from tests.integration.test_state import (
    assert_same_alerts,
    assert_same_statuses,
    audit_run,
    collect,
    wait_processed,
    wait_took_over,
)

pytestmark = pytest.mark.timeout(300)

EPISODE_RULES = {
    "PROGRESS_REPORT_OVERDUE",
    "PROGRESS_REPORT_BY_ASSISTANT",
    "PLAN_OF_CARE_MISSING",
    "CERTIFICATION_MISSING",
    "RECERTIFICATION_MISSING",
    "KX_MODIFIER_MISSING",
    "KX_MODIFIER_PREMATURE",
}


def episode_feed(seed: int, patients: int) -> list[tuple[bytes, bytes]]:
    """One cohort: every patient's episodes over about five months, in date order."""
    return [(r.key, r.value) for r in EpisodeGenerator(seed=seed, patients=patients).cohort()]


def check_oracle_covers_episode_rules(expected: dict[str, dict[str, Any]]) -> None:
    rules = Counter(a["rule_id"] for a in expected.values())
    covered = rules.keys() & EPISODE_RULES
    # The feed's flaws raise each episode rule; a feed that raised few would prove little.
    assert len(covered) >= 6, rules


def episode_status(worker: Worker) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in worker.metrics().splitlines():
        if line.startswith("therapy_compliance_episode_evaluations_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] += int(float(line.rsplit(" ", 1)[1]))
    return out


@pytest.mark.asyncio
async def test_episode_alerts_survive_sigkill_identical_to_an_uninterrupted_run(
    make_worker: Any, tmp_path: Path, report: Any
) -> None:
    t = Topics.unique("ep-kill")
    feed = episode_feed(seed=31, patients=120)
    expected, status = audit_run(feed, None, tmp_path)
    check_oracle_covers_episode_rules(expected)
    await create_topics(t)
    worker: Worker = make_worker(t)
    await produce(t.visits, feed)
    worker.start()
    await wait_processed(worker, len(feed) // 2)
    worker.stop(signal.SIGKILL)  # mid-feed: episodes half built, partly in the changelog
    worker.start()
    recs = await collect(t, expected, len(feed), len(status))
    counts = assert_same_alerts(recs, t, expected)
    repeats = assert_same_statuses(recs, t, status)
    statuses = episode_status(worker)
    # The feed holds episodes whose start is never sent: counted, not guessed.
    assert statuses["start_unseen"] > 0, statuses
    duplicates = sum(counts.values()) - len(counts)
    report(
        f"episodes, SIGKILL: {len(feed)} visits, {len(expected)} alerts as an uninterrupted "
        f"run, {duplicates} duplicates; {len(status)} statuses as audit, {repeats} repeated"
    )


@pytest.mark.asyncio
async def test_episode_state_moves_with_its_partitions(
    make_worker: Any, tmp_path: Path, report: Any
) -> None:
    t = Topics.unique("ep-move")
    feed = episode_feed(seed=32, patients=120)
    expected, status = audit_run(feed, None, tmp_path)
    check_oracle_covers_episode_rules(expected)
    half = len(feed) // 2
    first, second = feed[:half], feed[half:]  # date order: every patient's episodes span both
    await create_topics(t)
    app_id = f"tc-epmove-{os.urandom(3).hex()}"
    a: Worker = make_worker(t, app_id=app_id)
    a.start()
    await produce(t.visits, first)
    await wait_processed(a, len(first))
    b: Worker = make_worker(t, app_id=app_id)
    b.start(wait_healthy=False)
    await wait_took_over(b)
    await produce(t.visits, second)
    recs = await collect(t, expected, len(feed), len(status))
    assert_same_alerts(recs, t, expected)
    assert_same_statuses(recs, t, status)
    # b judged episodes it never saw begin: only the moved state could tell it their history.
    assert b.processed() > 0
    assert episode_status(b)["evaluated"] > 0
    report(f"episodes, rebalance: b processed {b.processed()} of {len(second)}")
