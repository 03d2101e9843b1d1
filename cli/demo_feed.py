"""`demo-feed`: synthetic visits into the input topic, the alerts they are meant to raise and the
holds they are meant to release; and, for the demo's summary, the holds the status topic shows
released (`--holds-released`).

Holds released (EVENTS.md "VisitStatus v1"): the status topic `billing.visit.status.v1` is a
table of visits (compacted, key `visit_id`); read from its beginning, a visit that was `hold` at
some version and is `ready` or `review` at its highest one was released, by the rules open at
its last `hold` and open no longer. `summarize_statuses` works on decoded records (no broker);
`read_statuses` is the thin Kafka read. A feed's visits are told apart by patient: the synthetic
visit ids (V-000000001, ...) repeat from one seed to the next, their patients do not.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ConfigDict, ValidationError

from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.visit_status import BillingStatus, VisitStatus
from synthetic.visits import Release, expected_rules, generator


async def demo_feed(
    settings: Settings,
    rate: float,
    count: int,
    seed: int,
    malformed_share: float,
    mode: str = "visits",
    out: TextIO = sys.stderr,
    releases_out: Path | None = None,
) -> Counter[str]:
    """Produce `count` visits at about `rate` per second (0 = as fast as possible), live (dates
    ending today). Returns the intended mix; also prints the alerts it intends, by rule (one
    per visit event and rule: ops/demo compares them with the worker's), and the holds it
    means to release, by rule (the visits some later record resolves: `Record.releases`);
    `releases_out` gets those and the patients sent, for `--holds-released --releases`."""
    if settings.create_topics:
        await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_request_size=settings.deadletter_max_bytes,
        **settings.aiokafka_security(),
    )
    await producer.start()
    intents: Counter[str] = Counter()
    intended: Counter[str] = Counter()
    releases: list[Release] = []
    patients: set[str] = set()
    gen = generator(mode, seed=seed, malformed_share=malformed_share, live=True)
    started = time.monotonic()
    last_report = started
    try:
        pending = []
        for i, rec in enumerate(gen.records(count), start=1):
            pending.append(await producer.send(settings.topic_visits, rec.value, key=rec.key))
            intents[rec.intent.split(":")[0]] += 1
            intended.update(expected_rules(mode, rec.intent))
            releases += rec.releases
            patients.add(rec.key.decode())
            if rate > 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            now = time.monotonic()
            if now - last_report >= 5:
                last_report = now
                out.write(f"demo-feed: {i}/{count} visits sent ({i / (now - started):.0f}/s)\n")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    out.write(
        f"demo-feed: sent {count} records to {settings.topic_visits} in {elapsed:.1f}s; "
        f"intended mix: {dict(sorted(intents.items()))}\n"
        f"demo-feed: intended alerts by rule: {rule_counts(intended)}\n"
        f"demo-feed: holds meant to be released: {len(releases)} visits; by rule resolved: "
        f"{rule_counts(released_by_rule(releases))}\n"
    )
    if releases_out is not None:
        releases_out.write_bytes(feed_releases_json(seed, mode, patients, releases))
    return intents


def rule_counts(counts: Counter[str]) -> str:
    """`RULE=N RULE=N ...` by rule id, or `none` (read by ops/demo)."""
    return " ".join(f"{rule}={n}" for rule, n in sorted(counts.items())) or "none"


# --- holds released: the status topic against what the feed meant ----------------------------


def released_by_rule(releases: Iterable[Release]) -> Counter[str]:
    """Visits released, counted once per rule each release resolves."""
    return Counter(rule for r in releases for rule in r.rules)


def feed_releases_json(
    seed: int, mode: str, patients: Iterable[str], releases: Sequence[Release]
) -> bytes:
    """What `--releases-out` writes: the feed's patients and the holds it means to release."""
    return orjson.dumps(
        {
            "seed": seed,
            "mode": mode,
            "patients": sorted(patients),
            "releases": [
                {
                    "patient_ref": r.patient_ref,
                    "visit_id": r.visit_id,
                    "rules": sorted(r.rules),
                    "to": r.to,
                }
                for r in releases
            ],
        },
        option=orjson.OPT_INDENT_2,
    )


def load_feed_releases(raw: bytes) -> tuple[set[str], list[Release]]:
    """The patients and releases of a `--releases-out` file."""
    data = orjson.loads(raw)
    releases = [
        Release(r["patient_ref"], r["visit_id"], frozenset(r["rules"]), r["to"])
        for r in data["releases"]
    ]
    return set(data["patients"]), releases


@dataclass(frozen=True, slots=True)
class HoldReleased:
    """A visit whose status was `hold` at some version and is `ready` or `review` now."""

    patient_ref: str
    visit_id: str
    date_of_service: date
    to: BillingStatus
    #: Rules open at the visit's last `hold` and no longer open.
    rules: tuple[str, ...]
    hold_version: int
    version: int
    #: What made the current version: correction, related_visit, ...
    cause: str

    def line(self) -> str:
        return (
            f"{self.visit_id} ({self.patient_ref}, DOS {self.date_of_service}): hold -> "
            f"{self.to.value} (version {self.hold_version} -> {self.version}, {self.cause}), "
            f"resolved {' '.join(self.rules) or 'no rule'}"
        )


@dataclass
class StatusSummary:
    """The status topic read as a table (the highest version per visit)."""

    #: Records considered (of the patients asked for, when asked), repeats included.
    records: int = 0
    #: Visits, by their current (highest version's) status.
    current: Counter[str] = field(default_factory=Counter)
    released: list[HoldReleased] = field(default_factory=list)

    @property
    def visits(self) -> int:
        return sum(self.current.values())


def summarize_statuses(
    records: Iterable[VisitStatus], patients: Container[str] | None = None
) -> StatusSummary:
    """The holds released among `records` (VisitStatus v1, in any order, repeats allowed: a
    record may be published again after a crash with the same version), only of `patients`
    when given. A visit is (patient_ref, visit_id); its current status is its highest version's.
    It was released when a version below that was `hold` and the current one is `ready` or
    `review`; its rules are those open at its last `hold` version and open at none now."""
    summary = StatusSummary()
    versions: dict[tuple[str, str], dict[int, VisitStatus]] = defaultdict(dict)
    for rec in records:
        if patients is not None and rec.patient_ref not in patients:
            continue
        summary.records += 1
        versions[(rec.patient_ref, rec.visit_id)].setdefault(rec.version, rec)
    for by_version in versions.values():
        now = by_version[max(by_version)]
        summary.current[now.status.value] += 1
        held = [v for v, rec in by_version.items() if rec.status is BillingStatus.HOLD]
        if not held or now.status is BillingStatus.HOLD:
            continue
        hold = by_version[max(held)]
        still = {a.rule_id for a in now.open_alerts}
        rules = sorted({a.rule_id for a in hold.open_alerts} - still)
        summary.released.append(
            HoldReleased(
                now.patient_ref,
                now.visit_id,
                now.date_of_service,
                now.status,
                tuple(rules),
                hold.version,
                now.version,
                now.cause.kind.value,
            )
        )
    summary.released.sort(key=lambda r: (r.date_of_service, r.visit_id, r.patient_ref))
    return summary


def holds_released_lines(
    summary: StatusSummary,
    topic: str,
    meant: Sequence[Release] | None = None,
    read: int | None = None,
    unreadable: int = 0,
    examples: int = 6,
) -> list[str]:
    """The demo's "holds released" summary; with `meant` (a feed's releases, its patients'
    statuses only in `summary`), set against what the feed meant to release, by rule. `read`:
    the records read from the topic in all (default: those in `summary`), `unreadable`: those
    that were not VisitStatus v1."""
    out = []
    whose = "this feed's visits" if meant is not None else "visits"
    skipped = f"; {unreadable} records not VisitStatus v1 skipped" if unreadable else ""
    read = summary.records if read is None else read
    if summary.records == 0:
        meaning = "" if meant is None else f"; the feed meant to release {len(meant)} holds"
        if read == 0:
            out.append(
                f"  {topic} is empty{skipped}: this worker does not publish visit statuses "
                f"(yet), so no hold can be shown released{meaning}"
            )
        else:
            out.append(
                f"  none of the {read} records on {topic} is of {whose}{skipped}: the worker "
                f"has not published their statuses{meaning}"
            )
        return out
    current = ", ".join(
        f"{status.value} {summary.current[status.value]}" for status in BillingStatus
    )
    out.append(
        f"  {topic}, from its beginning: {summary.records} records, {summary.visits} "
        f"{whose} (current status: {current}){skipped}"
    )
    released = summary.released
    out.append(
        f"  holds released: {len(released)} visits (hold at some version, now ready or review)"
    )
    got: Counter[str] = Counter(rule for r in released for rule in r.rules)
    if meant is not None:
        want = released_by_rule(meant)
        out.append(f"  {'rule resolved':<34} {'meant':>8} {'released':>8}")
        for rule in sorted(want.keys() | got.keys()):
            differs = "" if want[rule] == got[rule] else "   <- differs"
            out.append(f"  {rule:<34} {want[rule]:>8} {got[rule]:>8}{differs}")
        done = {(r.patient_ref, r.visit_id) for r in released}
        missing = [m for m in meant if (m.patient_ref, m.visit_id) not in done]
        if missing:
            shown = ", ".join(m.visit_id for m in missing[:5])
            out.append(f"  meant but not released: {len(missing)} (e.g. {shown})")
    else:
        out.append(f"  by rule resolved: {_counts(got)}")
    for r in _examples(released, examples):
        out.append(f"  e.g. {r.line()}")
    return out


def _examples(released: Sequence[HoldReleased], n: int) -> list[HoldReleased]:
    """Up to `n` released visits, the first of each set of rules resolved first."""
    first: dict[tuple[str, ...], HoldReleased] = {}
    for r in released:
        first.setdefault(r.rules, r)
    picked = list(first.values())[:n]
    picked += [r for r in released if r not in picked][: n - len(picked)]
    return sorted(picked, key=lambda r: (r.date_of_service, r.visit_id, r.patient_ref))


def _counts(counts: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


class _StatusIn(VisitStatus):
    """VisitStatus v1 as read: fields added within v1 are ignored (EVENTS.md)."""

    model_config = ConfigDict(extra="ignore")


def decode_status(value: bytes | None) -> VisitStatus | None:
    """A status record's value, or None when it is not a VisitStatus v1 (or a tombstone)."""
    if value is None:
        return None
    try:
        return _StatusIn.model_validate_json(value)
    except ValidationError:
        return None


async def read_statuses(settings: Settings) -> tuple[list[VisitStatus], int]:
    """The status topic from its beginning to its end as of now: the records, and how many
    were not VisitStatus v1. A topic that does not exist reads as empty."""
    topic = settings.topic_status
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.aiokafka_security(),
    )
    await consumer.start()
    records: list[VisitStatus] = []
    unreadable = 0
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return records, unreadable
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        while remaining:
            batch = await consumer.getmany(*sorted(remaining), timeout_ms=1000, max_records=5000)
            for tp, got in batch.items():
                for rec in got:
                    if rec.offset >= end[tp]:
                        continue
                    status = decode_status(rec.value)
                    if status is not None:
                        records.append(status)
                    elif rec.value is not None:
                        unreadable += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records, unreadable


async def holds_released(
    settings: Settings, feed: bytes | None = None, out: TextIO = sys.stdout
) -> StatusSummary:
    """Read the status topic and print the holds released (of the feed whose `--releases-out`
    file's contents are `feed`, against what it meant, when given)."""
    patients: set[str] | None = None
    meant: list[Release] | None = None
    if feed is not None:
        patients, meant = load_feed_releases(feed)
    records, unreadable = await read_statuses(settings)
    summary = summarize_statuses(records, patients)
    lines = holds_released_lines(summary, settings.topic_status, meant, len(records), unreadable)
    out.write("".join(line + "\n" for line in lines))
    return summary
