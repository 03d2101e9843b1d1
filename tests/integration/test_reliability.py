"""Nothing lost, nothing stops the service: kill, restart, rebalance, poison input, replay,
back-pressure, all against the real local broker (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.pipeline import MAX_INFLIGHT_BATCHES
from synthetic.visits import VisitGenerator
from tests.integration.expect import dead_value, expected_outputs
from tests.integration.harness import (
    BROKERS,
    Topics,
    Worker,
    by_topic,
    consume,
    create_topics,
    produce,
)

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


async def wait_processed(worker: Worker, at_least: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = worker.processed()
        if n >= at_least:
            return n
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker processed fewer than {at_least} in {timeout}s:\n{worker.tail()}")


def synthetic(n: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    # A pool of patients: each has several visits, whose order per patient is checked.
    return [(r.key, r.value) for r in VisitGenerator(seed=seed, patients=5000).records(n)]


async def collect_all(
    t: Topics, records: list[tuple[bytes | None, bytes]], timeout: float = 180
) -> list[Any]:
    """Everything the worker(s) published for `records`: waits until every accepted visit has a
    VisitChecked and every rejected record a dead letter, then 3 s more for late duplicates."""
    exp = expected_outputs(records)

    def complete(recs: list[Any]) -> bool:
        events = {orjson.loads(r.value)["event_id"] for r in recs if r.topic == t.checked}
        dead = {(r.partition, r.offset) for r in recs if r.topic == t.deadletter}
        return len(events) >= len(exp.checked_events) and len(dead) >= len(exp.dead_values)

    return await consume(
        [t.alerts, t.checked, t.deadletter], until=complete, timeout=timeout, idle_after=3
    )


def _src(letter: dict[str, Any]) -> tuple[int, int]:
    return letter["source"]["partition"], letter["source"]["offset"]


def verify_nothing_lost(
    recs: list[Any],
    t: Topics,
    records: list[tuple[bytes | None, bytes]],
) -> dict[str, int]:
    exp = expected_outputs(records)
    checked = by_topic(recs, t.checked)
    alerts = by_topic(recs, t.alerts)
    dead = by_topic(recs, t.deadletter)
    seen_events = Counter(c["event_id"] for c in checked)
    assert set(seen_events) == exp.checked_events, (
        f"missing {len(exp.checked_events - set(seen_events))} visits"
    )
    alert_counts = Counter(a["alert_id"] for a in alerts)
    assert set(alert_counts) == exp.alert_ids  # every duplicate carries an id already issued
    assert Counter(dead_value(d) for d in {_src(d): d for d in dead}.values()) == Counter(
        exp.dead_values
    )  # each rejected record once, with its original bytes
    dead_counts = Counter(_src(d) for d in dead)
    return {
        "visits": len(exp.checked_events),
        "duplicate_checked": sum(seen_events.values()) - len(seen_events),
        "duplicate_alerts": sum(alert_counts.values()) - len(alert_counts),
        "duplicate_dead_letters": sum(dead_counts.values()) - len(dead_counts),
    }


@pytest.mark.asyncio
async def test_sigkill_mid_stream_loses_nothing(make_worker: Any, report: Any) -> None:
    t = Topics.unique("sigkill")
    records = synthetic(20_000, seed=101)
    worker: Worker = make_worker(t)
    await create_topics(t)
    await produce(t.visits, records)
    worker.start()
    killed_at = await wait_processed(worker, 3000)
    worker.stop(signal.SIGKILL)
    assert killed_at < len(records), "the worker finished before it could be killed mid-stream"
    worker.start()
    recs = await collect_all(t, records)
    figures = verify_nothing_lost(recs, t, records)
    report(f"SIGKILL after {killed_at:.0f} of {len(records)} records: {figures}")


@pytest.mark.asyncio
async def test_broker_restart_mid_stream_worker_recovers_by_itself(
    make_worker: Any, report: Any
) -> None:
    t = Topics.unique("brokerrestart")
    first, second = synthetic(6000, seed=202), synthetic(3000, seed=203)
    worker: Worker = make_worker(t)
    await create_topics(t)
    await produce(t.visits, first)
    worker.start()
    await wait_processed(worker, 1000)
    pid = worker.proc.pid if worker.proc else None
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "ops/kafka/local-kafka"), "restart"],
        check=True,
        timeout=120,
        env=os.environ.copy(),
    )
    down_s = time.monotonic() - started
    await produce(t.visits, second)
    recs = await collect_all(t, first + second)
    figures = verify_nothing_lost(recs, t, first + second)
    assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
    worker.wait_healthy(60)
    report(f"broker restart ({down_s:.1f}s) mid-stream, worker not restarted: {figures}")


def patient_stream(patients: int, per_patient: int) -> list[tuple[bytes | None, bytes]]:
    """Visits of each patient in a known order: event ids P<p>-<seq>, produced in seq order."""
    from tests.factories import raw, timed_visit

    out = []
    for seq in range(per_patient):
        for p in range(patients):
            data = timed_visit(("97110", 2 + seq % 2, 33), ("97140", 1, 7))
            data.update(event_id=f"P{p}-{seq:05d}", visit_id=f"V{p}-{seq}", patient_ref=f"P-{p}")
            out.append((f"P-{p}".encode(), raw(data)))
    return out


def assert_patient_order(recs: list[Any], t: Topics) -> None:
    first_seen: dict[str, datetime] = {}
    for c in by_topic(recs, t.checked):  # first processing of each event, by checked_at
        ev = c["event_id"]
        # Compared as instants, not strings: a time on a whole second is written without a
        # fraction ("...:38Z"), which sorts after "...:38.031734Z" as text.
        at = datetime.fromisoformat(c["checked_at"])
        if ev not in first_seen or at < first_seen[ev]:
            first_seen[ev] = at
    by_patient: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for ev, at in first_seen.items():
        patient, seq = ev.split("-")
        by_patient[patient].append((seq, at))
    for patient, items in by_patient.items():
        times = [at for _, at in sorted(items)]
        assert times == sorted(times), f"patient {patient}'s visits were processed out of order"


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "sigkill"])
async def test_two_workers_one_stops_the_other_takes_over(
    make_worker: Any, report: Any, sig: signal.Signals
) -> None:
    t = Topics.unique(f"scale-{sig.name.lower()}")
    records = patient_stream(patients=40, per_patient=300)  # 12,000 visits over 4 partitions
    app_id = f"tc-scale-{os.urandom(3).hex()}"
    a: Worker = make_worker(t, app_id=app_id)
    b: Worker = make_worker(t, app_id=app_id)
    a.start()
    b.start(wait_healthy=False)
    await produce(t.visits, records[: len(records) // 2])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both members of the group hold partitions
        if a.health_status() == 200 and b.health_status() == 200:
            break
        await asyncio.sleep(0.3)
    await produce(t.visits, records[len(records) // 2 :])
    await wait_processed(a, 500)
    a.stop(sig)
    recs = await collect_all(t, records)
    figures = verify_nothing_lost(recs, t, records)
    assert_patient_order(recs, t)
    health = b.wait_healthy(30)
    assert health["assigned_partitions"] == [0, 1, 2, 3]
    report(f"two workers, one stopped with {sig.name}: {figures}")


@pytest.mark.asyncio
async def test_sigterm_commits_and_exits_within_the_stated_bound(
    make_worker: Any, report: Any
) -> None:
    # README/docs/reliability.md: a worker exits within TC_SHUTDOWN_TIMEOUT_S (default 30 s)
    # of SIGTERM. The bound is enforced by the worker (watchdog), this asserts it holds.
    t = Topics.unique("sigterm")
    records = synthetic(20_000, seed=303)
    worker: Worker = make_worker(t)
    await create_topics(t)
    await produce(t.visits, records)
    worker.start()
    at = await wait_processed(worker, 2000)
    started = time.monotonic()
    code = worker.stop(signal.SIGTERM, timeout=45)
    took = time.monotonic() - started
    assert code == 0, worker.tail()
    assert took <= 30 + 5, f"SIGTERM took {took:.1f}s"
    worker.start()
    recs = await collect_all(t, records)
    figures = verify_nothing_lost(recs, t, records)
    # A graceful stop commits what it finished: at most the batch in flight is redone.
    assert figures["duplicate_checked"] <= 500, figures
    report(f"SIGTERM after {at:.0f} records: exit 0 in {took:.1f}s; {figures}")


@pytest.mark.asyncio
async def test_replay_deadletter_after_a_fix(make_worker: Any, tmp_path: Path) -> None:
    t = Topics.unique("replay")
    records = synthetic(300, seed=404)
    valid = [(k, v) for k, v in records if expected_outputs([(k, v)]).checked_events][:40]
    worker: Worker = make_worker(t, TC_MAX_RECORD_BYTES="1024", TC_DEADLETTER_MAX_BYTES="65536")
    # Visits padded (JSON whitespace) past 1 KiB are rejected as too_large by a worker
    # configured too tight ...
    big = [(k, v[:-1] + b" " * (1100 - len(v)) + b"}") for k, v in valid]
    assert all(len(v) > 1024 for _, v in big)
    await create_topics(t)
    worker.start()
    await produce(t.visits, big)
    recs = await consume([t.deadletter], until=len(big))
    assert {d["reason"] for d in by_topic(recs, t.deadletter)} == {"too_large"}
    worker.stop()
    # ... the fix: a sane limit; then the dead letters are replayed and checked.
    fixed: Worker = make_worker(t, app_id=worker.app_id)
    fixed.start()
    env = {**fixed.env}
    exe = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "therapy-compliance"
    exe = exe if exe.exists() else ROOT / ".venv/bin/therapy-compliance"
    dry = subprocess.run(
        [str(exe), "replay-deadletter", "--reason", "schema_violation"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0 and "replayed 0" in dry.stderr, dry.stderr
    done = subprocess.run(
        [str(exe), "replay-deadletter", "--reason", "too_large", "--since", "2000-01-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"replayed {len(big)} (too_large {len(big)})" in done.stderr
    exp = expected_outputs(big)
    recs = await consume([t.checked], until=len(exp.checked_events), timeout=60)
    assert {c["event_id"] for c in by_topic(recs, t.checked)} == exp.checked_events


@pytest.mark.asyncio
async def test_alert_topic_unavailable_holds_input_then_drains(make_worker: Any) -> None:
    # Back-pressure: while the alert topic refuses writes (here: its max.message.bytes is set
    # below any alert's size), the worker holds the batch and does not run ahead; once the topic
    # is fixed, everything arrives.
    t = Topics.unique("backpressure")
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t.alerts, 4, 1, topic_configs={"max.message.bytes": "64"})]
        )
        records = synthetic(5000, seed=505)
        worker: Worker = make_worker(t)
        await create_topics(t)
        await produce(t.visits, records)
        worker.start()
        await asyncio.sleep(6)
        stalled_at = worker.processed()
        held = await consume([t.checked], until=10**9, timeout=2)
        # At most the batches allowed in flight, plus the one being submitted, are processed.
        bound = (MAX_INFLIGHT_BATCHES + 1) * 500
        assert stalled_at <= bound, "the worker ran ahead of an unavailable output topic"
        assert len(held) <= bound
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, t.alerts, configs={"max.message.bytes": "1048588"}
                )
            ]
        )
        recs = await collect_all(t, records)
        verify_nothing_lost(recs, t, records)
    finally:
        await admin.close()
