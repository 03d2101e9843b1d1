"""State and its outputs as one unit on the real broker (issue 17): what the worker's tables
remember about an output must never get ahead of the broker having that output, and a table's
changelog must end with its current owner's value.

- Join state and the visit topic: HL7 visits (synthetic/hl7.py, both halves) on the
  inbound topic, the visit topic refusing writes (max.message.bytes far below a visit), the worker
  SIGKILLed while stalled, the topic fixed, the worker restarted: every visit of an uninterrupted
  run of the same messages reaches the visit topic. The same with the join's expiry (one-part
  visits, emitted by the timer after TC_JOIN_WAIT_S) and with SIGTERM instead of SIGKILL.
  (Reported: with 300 synthetic HL7 visits, 278 of the 300 joined visits never reached the visit
  topic after the SIGKILL + restart. Today the join's stored record says "emitted" before the
  broker has the visit, so the restarted worker never emits it again.)
- A revoke while a changelog send is being retried: after the new owner's writes, the last value
  per key of the `patient-history` changelog (a compacted topic's meaning), read as a restore
  would (compliance/state_layout.py, format 3: a head and one key per visit), holds every visit
  produced for the patient. (Reported when a patient was one key: the old owner kept
  re-sending its stale whole-history value after losing the partition.)
- A join record that does not decode (a garbage value on the `ehr-visit-join` changelog, under
  the key of a visit that then receives a part): a dead letter with reason processing_error, the
  worker keeps running (same process, never restarted), the other visits reach the visit topic.
  (Today the worker crash-loops.)

Oracles are independent of the worker's code: the visits an uninterrupted run (its own topics
and app id, no refusal) puts on its visit topic; the visit ids the generator and the test made;
the join key and partition computed here as the issue defines them (patient_ref from the parser
run offline, "\\x1f", the visit key text; Kafka's murmur2 partitioner over TC_PARTITIONS).
Duplicates are allowed everywhere (at-least-once): sets are compared, not counts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.partitioner import murmur2

from compliance import state_layout
from ehr import Rejection, load_config, parse_hl7v2
from runtime.settings import Settings
from runtime.topics import ensure_topics
from streams.tables import JOIN_TABLE, TABLE_NAME
from synthetic.hl7 import Hl7Message, Hl7VisitGenerator, demo_profile_text
from tests.factories import raw, timed_visit
from tests.integration.harness import (
    BROKERS,
    Topics,
    Worker,
    by_topic,
    committed_offsets,
    consume,
    create_topics,
    produce,
)
from tests.integration.test_delivery import admin_client, set_max_message_bytes
from tests.integration.test_ehr_stream import KEY, ehr_topics
from tests.integration.test_state import wait_took_over

pytestmark = pytest.mark.timeout(300)

PARTITIONS = 4
#: Far below any visit, history or join record: the topic refuses every write.
REFUSING = 64
FIXED = 1_048_576
EMITTED = "therapy_compliance_ehr_visits_emitted_total"
RETRIES = "therapy_compliance_output_send_retries_total"
PARTS = "therapy_compliance_ehr_parts_total"


# ---- helpers -----------------------------------------------------------------------------------


def profile_file(tmp: Path) -> Path:
    """The shipped profile plus the demo's commercial payers (the generator's traffic)."""
    path = tmp / "demo-profile.toml"
    path.write_text(demo_profile_text())
    return path


def synthetic_visits(n: int, seed: int, charges_only: bool = False) -> list[list[Hl7Message]]:
    """`n` visits of the seeded generator, each one DFT and one MDM (in the sender's order), or
    with `charges_only` just the DFT. Visits sent with a superseded DFT or without a note are
    skipped, so an uninterrupted run emits exactly one visit (one event id) per visit."""
    out: list[list[Hl7Message]] = []
    for messages in Hl7VisitGenerator(seed=seed).visits(4 * n):
        if sorted(m.kind for m in messages) != ["charges", "documentation"]:
            continue
        out.append([m for m in messages if m.kind == "charges"] if charges_only else messages)
        if len(out) == n:
            return out
    raise AssertionError("the generator gave too few two-part visits")


def inbound_records(visits: list[list[Hl7Message]]) -> list[tuple[bytes | None, bytes]]:
    # The raw topic may be keyed by anything (parsing re-keys by patient_ref): the visit number.
    return [(m.visit.encode(), m.raw) for messages in visits for m in messages]


async def create_ehr_topics(t: Topics, env: dict[str, str]) -> None:
    """Every topic of the worker's EHR path as the worker would create it (so producing to the
    inbound topic before the worker starts does not auto-create it with one partition)."""
    await ensure_topics(
        Settings.from_env(
            {**t.env(), **env, "TC_BROKERS": BROKERS, "TC_PARTITIONS": str(PARTITIONS)}
        )
    )


async def create_refusing(topic: str, compacted: bool = False) -> None:
    configs = {"max.message.bytes": str(REFUSING)}
    if compacted:
        configs["cleanup.policy"] = "compact"
    async with admin_client() as admin:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=configs)])


def changelog(app_id: str, table: str) -> str:
    """faust's changelog topic name (faust/tables/base.py `_changelog_topic_name`)."""
    return f"{app_id}-{table}-changelog"


def metric(worker: Worker, name: str) -> float:
    total = 0.0
    for line in worker.metrics().splitlines():
        if line.startswith((f"{name}{{", f"{name} ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def wait_stalled(worker: Worker, messages: int, quiet: float, timeout: float = 90) -> float:
    """Until the worker has parsed every message and emitted visits that the refusing topic
    holds (their sends are retried), and has emitted no more for `quiet` seconds
    (back-pressure): returns how many visits it emitted."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        emitted, retries = metric(worker, EMITTED), metric(worker, RETRIES)
        if emitted != last:
            last, since = emitted, time.monotonic()
        elif (
            emitted > 0
            and retries > 0
            and metric(worker, PARTS) >= messages
            and time.monotonic() - since >= quiet
        ):
            return emitted
        await asyncio.sleep(0.3)
    raise AssertionError(f"the worker did not stall ({last} emitted):\n{worker.tail()}")


async def end_offsets(topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=BROKERS, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


async def all_committed(group: str, topics: list[str]) -> bool:
    """The group has committed every record of these topics (the worker is done with them)."""
    ends = await end_offsets(topics)
    for topic in topics:
        committed = await committed_offsets(group, topic)
        for (t, p), end in ends.items():
            if t == topic and end > 0 and committed.get(p, -1) < end:
                return False
    return True


async def event_ids_on(
    topic: str,
    expected: set[str],
    settled: Callable[[], Awaitable[bool]],
    grace: float,
    timeout: float = 120,
) -> set[str]:
    """The event ids on the visit topic, read until every expected one is there, or until the
    worker has been `settled` (all its input committed) for `grace` seconds, or timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BROKERS,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: set[str] = set()
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    next_check = 0.0
    try:
        while time.monotonic() < deadline and not expected <= got:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for recs in batch.values():
                got.update(orjson.loads(r.value)["event_id"] for r in recs if r.value)
            now = time.monotonic()
            if settled_at is None and now >= next_check:
                next_check = now + 1
                if await settled():
                    settled_at = now
            if settled_at is not None and now - settled_at >= grace:
                break
    finally:
        await consumer.stop()
    return got


# ---- visits held by a refusing visit topic, the worker killed or stopped -----------------------

SCENARIOS = {
    # name: (signal, one part per visit (emitted by the join's expiry), TC_JOIN_WAIT_S)
    "joined-sigkill": (signal.SIGKILL, False, "900"),
    "expiry-sigkill": (signal.SIGKILL, True, "2"),
    "joined-sigterm": (signal.SIGTERM, False, "900"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_visits_held_by_a_refusing_visit_topic_survive_the_worker_stopping(
    scenario: str, make_worker: Any, tmp_path: Path, report: Any
) -> None:
    sig, charges_only, wait_s = SCENARIOS[scenario]
    n = 300
    visits = synthetic_visits(n, seed=17, charges_only=charges_only)
    records = inbound_records(visits)
    profile = profile_file(tmp_path)
    extra = {"TC_EHR_PROFILE": str(profile), "TC_JOIN_WAIT_S": wait_s}

    # The uninterrupted run: the same messages, nothing refused; run alongside the other.
    t_ok, env_ok = ehr_topics(f"tx-{scenario}-oracle")
    env_ok.update(extra)
    await create_ehr_topics(t_ok, env_ok)
    # The interrupted run: its visit topic refuses every visit until it is fixed.
    t, env = ehr_topics(f"tx-{scenario}")
    # Batches of up to a second: most visits are in flight when the topic stalls the worker.
    env.update(extra, TC_SHUTDOWN_TIMEOUT_S="6", TC_BATCH_WITHIN_S="1")
    await create_refusing(t.visits)
    await create_ehr_topics(t, env)
    await produce(env_ok["TC_TOPIC_HL7_INBOUND"], records)
    await produce(env["TC_TOPIC_HL7_INBOUND"], records)

    oracle: Worker = make_worker(t_ok, **env_ok)
    worker: Worker = make_worker(t, **env)
    oracle.start(wait_healthy=False)
    worker.start(wait_healthy=False)
    oracle.wait_healthy()
    worker.wait_healthy()

    held = await wait_stalled(
        worker, len(records), quiet=3 + (float(wait_s) if charges_only else 0)
    )
    code = worker.stop(sig, timeout=60)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    await set_max_message_bytes(t.visits, FIXED)
    worker.start()

    ok = await consume(
        [t_ok.visits],
        until=lambda rs: len({orjson.loads(r.value)["event_id"] for r in rs}) >= n,
        timeout=120,
    )
    expected = {v["event_id"] for v in by_topic(ok, t_ok.visits)}
    assert len(expected) == n, f"the uninterrupted run emitted {len(expected)} of {n} visits"
    oracle.stop()

    inputs = [env["TC_TOPIC_HL7_INBOUND"], env["TC_TOPIC_EHR_PARTS"]]
    got = await event_ids_on(
        t.visits,
        expected,
        settled=lambda: all_committed(worker.app_id, inputs),
        grace=float(wait_s) + 6 if charges_only else 6,
    )
    missing = expected - got
    report(
        f"{scenario}: {held:.0f} visits held by the refusing topic at the stop, "
        f"{len(missing)} of {n} missing after the restart"
    )
    assert not missing, (
        f"missing {len(missing)} of {n} visits of the uninterrupted run after {sig.name} + "
        f"restart ({held:.0f} were emitted into the refusing topic before the stop)"
    )


# ---- a revoke while a changelog send is being retried -------------------------------------------


def patient_visits(
    patients: int, wave: str
) -> tuple[list[tuple[bytes | None, bytes]], dict[str, str]]:
    """One overbilled visit per patient (each raises an alert): records and visit ids."""
    records: list[tuple[bytes | None, bytes]] = []
    ids: dict[str, str] = {}
    for i in range(patients):
        data = timed_visit(("97110", 3, 33), ("97140", 1, 7))
        data.update(
            event_id=f"E-{wave}-{i}",
            visit_id=f"V-{wave}-{i}",
            patient_ref=f"P-{i}",
            date_of_service="2026-03-02",
        )
        records.append((data["patient_ref"].encode(), raw(data)))
        ids[data["patient_ref"]] = data["visit_id"]
    return records, ids


async def read_all(topic: str) -> list[Any]:
    """Every record of the topic up to its current end offsets."""
    ends = await end_offsets([topic])
    want = {p: end for (_, p), end in ends.items() if end > 0}

    def done(recs: list[Any]) -> bool:
        last: dict[int, int] = {}
        for r in recs:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        return all(last.get(p, -1) >= end - 1 for p, end in want.items())

    return await consume([topic], until=done, timeout=60)


def held_ids(last: dict[bytes, bytes | None], patient: str) -> set[str]:
    """The visit ids of the patient's history as a restore of the changelog would give it:
    `last` is each key's last changelog value (compliance/state_layout.py: a head and one key
    per visit)."""
    key = patient.encode()
    prefix = state_layout.visits_prefix(key)
    visits = sorted((k, v) for k, v in last.items() if k.startswith(prefix) and v is not None)
    head = last.get(key)
    if head is None and not visits:
        return set()
    history = state_layout.read(key, head, visits).history
    return {versions[0].visit_id for versions in history.visits}


@pytest.mark.asyncio
async def test_after_a_revoke_the_changelog_ends_with_the_new_owners_values(
    make_worker: Any, report: Any
) -> None:
    t = Topics.unique("tx-revoke")
    app_id = f"tc-revoke-{os.urandom(3).hex()}"
    history_log = changelog(app_id, TABLE_NAME)
    # The changelog as faust would create it (compacted, TC_PARTITIONS partitions: accepted by
    # the worker's topic check), refusing every history value.
    await create_refusing(history_log, compacted=True)
    await create_topics(t)
    patients = 400
    first, first_ids = patient_visits(patients, "a")
    second, second_ids = patient_visits(patients, "b")
    await produce(t.visits, first)

    a: Worker = make_worker(t, app_id=app_id)
    a.start()
    deadline = time.monotonic() + 60
    while not (a.processed() > 0 and metric(a, RETRIES) > 0):  # alerts out, changelog retried
        assert time.monotonic() < deadline, a.tail()
        await asyncio.sleep(0.3)
    b: Worker = make_worker(t, app_id=app_id)
    b.start(wait_healthy=False)
    await wait_took_over(b, timeout=90)  # a gave up some partitions with its sends in flight
    await set_max_message_bytes(history_log, FIXED)
    fixed_at = time.monotonic()
    await produce(t.visits, second)

    # Every visit checked (by either worker), and long enough for every send still being
    # retried (backoff up to 10 s) to have gone out.
    everything = {f"E-{w}-{i}" for w in "ab" for i in range(patients)}
    checked = await consume(
        [t.checked],
        until=lambda rs: everything <= {orjson.loads(r.value)["event_id"] for r in rs},
        timeout=90,
    )
    unchecked = everything - {c["event_id"] for c in by_topic(checked, t.checked)}
    assert not unchecked, f"{len(unchecked)} of {len(everything)} visits never checked"
    await asyncio.sleep(max(0.0, fixed_at + 15 - time.monotonic()))

    # Each key's last record (what compaction keeps and a restore ends with): every patient's
    # history as restored must hold both visits, whatever the old owner sent late.
    last: dict[bytes, bytes | None] = {}
    for r in sorted(await read_all(history_log), key=lambda r: (r.partition, r.offset)):
        last[r.key] = r.value
    stale = []
    for i in range(patients):
        ref = f"P-{i}"
        want = {first_ids[ref], second_ids[ref]}
        held = held_ids(last, ref)
        if not want <= held:
            stale.append((ref, sorted(want - held)))
    owned_b = len(orjson.loads(b.get("/health")[1])["assigned_partitions"])
    report(
        f"revoke while retrying the changelog: {len(stale)} of {patients} patients' restored "
        f"history misses visits (b owns {owned_b} partitions, processed {b.processed()} visits)"
    )
    assert not stale, (
        f"{len(stale)} of {patients} patients' history as the changelog restores it misses "
        f"visits, e.g. {stale[:3]}"
    )


# ---- a join record that does not decode ---------------------------------------------------------


def partition_of(key: bytes) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka compute it)."""
    return int((murmur2(key) & 0x7FFFFFFF) % PARTITIONS)


@pytest.mark.asyncio
async def test_an_undecodable_join_record_is_dead_lettered_and_the_worker_keeps_running(
    make_worker: Any, tmp_path: Path
) -> None:
    t, env = ehr_topics("tx-garbage")
    profile = profile_file(tmp_path)
    # A wait of 40 s: the expiry scan (every 10 s) also meets the undecodable records.
    env.update(TC_EHR_PROFILE=str(profile), TC_JOIN_WAIT_S="40")
    app_id = f"tc-garbage-{os.urandom(3).hex()}"
    config = load_config(KEY, profile)
    target, *others = synthetic_visits(41, seed=23)
    spare = synthetic_visits(1, seed=24)[0]

    def join_key(message: Hl7Message) -> tuple[bytes, int]:
        part = parse_hl7v2(message.raw, config)  # offline: patient_ref as the profile keys it
        assert not isinstance(part, Rejection), part
        return (
            f"{part.patient_ref}\x1f{part.visit.text}".encode(),
            partition_of(part.patient_ref.encode()),
        )

    key, partition = join_key(target[0])
    spare_key, spare_partition = join_key(spare[0])
    behind = [o for o in others if join_key(o[0])[1] == partition]
    assert behind, "no other visit shares the target's partition"

    join_log = changelog(app_id, JOIN_TABLE)
    async with admin_client() as admin:
        await admin.create_topics(
            [NewTopic(join_log, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    await create_ehr_topics(t, env)
    producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all")
    await producer.start()
    try:
        # Under the key of a visit that will receive a part, and under one that never will
        # (only the expiry scan reads it).
        await producer.send_and_wait(join_log, b"\x00not-a-join-record", key, partition)
        await producer.send_and_wait(join_log, b"{not json", spare_key, spare_partition)
    finally:
        await producer.stop()

    worker: Worker = make_worker(t, app_id=app_id, **env)
    worker.start()
    assert worker.proc is not None
    pid, started = worker.proc.pid, time.monotonic()
    await produce(env["TC_TOPIC_HL7_INBOUND"], inbound_records([target, *others]))

    dead_topic, parts_topic = env["TC_TOPIC_EHR_DEADLETTER"], env["TC_TOPIC_EHR_PARTS"]
    want = {o[0].visit for o in others}

    def done(recs: list[Any]) -> bool:
        if worker.proc is None or worker.proc.poll() is not None:
            return True  # the worker is gone: nothing more will come
        letters = [orjson.loads(r.value) for r in recs if r.topic == dead_topic]
        seen = {orjson.loads(r.value)["visit_id"] for r in recs if r.topic == t.visits}
        return any(d["reason"] == "processing_error" for d in letters) and want <= seen

    recs = await consume([dead_topic, t.visits, parts_topic], until=done, timeout=60)
    # Keep watching through at least one expiry scan over the undecodable records.
    while time.monotonic() - started < 14 and worker.proc.poll() is None:
        await asyncio.sleep(0.5)

    exited = worker.proc.poll()
    log = worker.log_path.read_text(errors="replace").splitlines()
    crashes = [line for line in log if "Crashed reason=" in line]
    assert exited is None and worker.proc.pid == pid and worker.starts == 1, (
        f"the worker exited ({exited}) after meeting an undecodable join record: "
        f"{crashes or log[-10:]}"
    )
    # The part for the undecodable record's visit went to the partition computed here.
    target_ref = key.split(b"\x1f")[0]
    assert {r.partition for r in recs if r.topic == parts_topic and r.key == target_ref} == {
        partition
    }
    letters = by_topic(recs, dead_topic)
    assert any(d["reason"] == "processing_error" for d in letters), letters
    seen = {v["visit_id"] for v in by_topic(recs, t.visits)}
    assert want <= seen, f"missing {len(want - seen)} of {len(want)} other visits"
    assert {o[0].visit for o in behind} <= seen  # the ones behind it in its partition too
