"""`demo-feed` (cli/demo_feed.py) with a stand-in producer: it sends the live synthetic feed (dates
ending today, by the real clock) and prints the alerts it intends by rule, which ops/demo sets
against the worker's; `audit` over what it sent raises exactly those. It also prints (and
writes) the holds it means to release; `--holds-released` reads the status topic as a table (the
highest version per visit; here from records built with the VisitStatus model and a stand-in
consumer) and prints the visits released from hold, against what the feed meant."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import orjson
import pytest
from aiokafka import TopicPartition

import cli.demo_feed
from cli.audit import run_audit
from cli.demo_feed import (
    demo_feed,
    holds_released,
    holds_released_lines,
    load_feed_releases,
    read_statuses,
    released_by_rule,
    summarize_statuses,
)
from compliance import Engine
from runtime.settings import Settings
from schemas import Rejection, decode_visit
from schemas.common import Discipline, Severity
from schemas.visit_status import BillingStatus, Cause, OpenAlert, StatusCause, VisitStatus
from synthetic.visits import Release


class Producer:
    """aiokafka's producer as demo_feed uses it: start, send (a future), stop."""

    sent: ClassVar[list[tuple[str, bytes, bytes]]] = []

    def __init__(self, **_: Any) -> None:
        Producer.sent = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        Producer.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.parametrize("mode", ["visits", "episodes"])
def test_the_feed_prints_the_alerts_it_intends_and_audit_raises_them(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.demo_feed, "AIOKafkaProducer", Producer)
    settings = Settings.from_env({"TC_CREATE_TOPICS": "false"})
    out = io.StringIO()
    intents = asyncio.run(demo_feed(settings, 0, 600, 5, 0.02, mode, out))
    assert sum(intents.values()) == len(Producer.sent) == 600
    (line,) = [x for x in out.getvalue().splitlines() if "intended alerts by rule: " in x]
    intended = {
        rule: int(n)
        for rule, n in (kv.split("=") for kv in line.split("intended alerts by rule: ")[1].split())
    }
    assert sum(intended.values()) > 20

    values = [value for _, _, value in Producer.sent]
    err = io.StringIO()
    summary = run_audit(io.BytesIO(b"\n".join(values)), io.BytesIO(), err, engine=Engine())
    assert dict(summary.alerts_by_rule) == intended
    assert summary.invalid_lines == intents["malformed"] > 0
    visits = [v for v in map(decode_visit, values) if not isinstance(v, Rejection)]
    assert max(v.date_of_service for v in visits) <= date.today()  # live: ending today (local)


# --- holds released: the status topic against what the feed meant ------------------------------

AT = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def status(
    visit: str,
    version: int,
    state: str,
    open_rules: dict[str, str] | None = None,
    cause: str = "visit",
    patient: str = "P-1",
    resolved: tuple[str, ...] = (),
) -> VisitStatus:
    """A VisitStatus v1 record; `open_rules`: alert id -> rule id (severity by the rule)."""
    alerts = [
        OpenAlert(
            alert_id=alert_id,
            rule_id=rule,
            severity=Severity.WARNING if rule in WARNINGS else Severity.ERROR,
            line_ids=[],
            amount_at_risk="31.05",
        )
        for alert_id, rule in (open_rules or {}).items()
    ]
    return VisitStatus(
        visit_id=visit,
        patient_ref=patient,
        date_of_service=date(2026, 11, 2),
        payer_id="MEDICARE-B",
        discipline=Discipline.PT,
        event_id=f"e-{visit}-{version}",
        status=BillingStatus(state),
        open_alerts=alerts,
        resolved_alert_ids=list(resolved),
        amount_at_risk="31.05" if alerts else None,
        cause=Cause(event_id=f"e-{visit}-{version}", visit_id=visit, kind=StatusCause(cause)),
        version=version,
        ruleset_version="rs",
        engine_version="0.1.0",
        updated_at=AT,
    )


WARNINGS = {"KX_MODIFIER_PREMATURE", "PROGRESS_REPORT_BY_ASSISTANT"}
EXCEED, CERT, KX_EARLY = (
    "TIMED_UNITS_EXCEED_MINUTES",
    "CERTIFICATION_MISSING",
    "KX_MODIFIER_PREMATURE",
)


def test_holds_released_keeps_the_highest_version_per_visit() -> None:
    records = [
        # A corrected visit: hold on its first event, ready on its correction.
        status("V-1", 1, "hold", {"a1": EXCEED}),
        status("V-1", 2, "ready", cause="correction", resolved=("a1",)),
        # A delayed certification resolves V-2's; a premature KX stays open: review. Repeated
        # records (at-least-once) and an order other than the versions' change nothing.
        status("V-2", 2, "review", {"k2": KX_EARLY}, "related_visit", resolved=("c2",)),
        status("V-2", 1, "hold", {"c2": CERT, "k2": KX_EARLY}),
        status("V-2", 2, "review", {"k2": KX_EARLY}, "related_visit", resolved=("c2",)),
        status("V-2", 1, "hold", {"c2": CERT, "k2": KX_EARLY}),
        # Still held: one of two errors resolved.
        status("V-3", 1, "hold", {"c3": CERT, "x3": "KX_MODIFIER_MISSING"}),
        status("V-3", 2, "hold", {"x3": "KX_MODIFIER_MISSING"}, "related_visit"),
        # Released, then held again: hold now.
        status("V-4", 1, "hold", {"c4": CERT}),
        status("V-4", 2, "ready", cause="related_visit"),
        status("V-4", 3, "hold", {"n4": "NCCI_PTP_CONFLICT"}, "related_visit"),
        # Never held.
        status("V-5", 1, "ready"),
        status("V-6", 1, "review", {"w6": KX_EARLY}),
        status("V-6", 2, "ready", cause="correction"),
        # Held, then released by a correction whose event raises its warning again (a new
        # alert id): the warning's rule is not resolved.
        status("V-7", 1, "hold", {"a7": EXCEED, "k7": KX_EARLY}),
        status("V-7", 2, "review", {"b7": KX_EARLY}, "correction", resolved=("a7", "k7")),
        # The same visit id of another patient (another seed of the demo): another visit.
        status("V-1", 1, "hold", {"z1": EXCEED}, patient="P-2"),
    ]
    summary = summarize_statuses(records)
    assert summary.records == len(records)
    assert summary.current == {"hold": 3, "review": 2, "ready": 3}
    assert summary.visits == 8
    got = [
        (r.visit_id, r.to.value, r.rules, r.hold_version, r.version, r.cause)
        for r in summary.released
    ]
    assert got == [
        ("V-1", "ready", (EXCEED,), 1, 2, "correction"),
        ("V-2", "review", (CERT,), 1, 2, "related_visit"),
        ("V-7", "review", (EXCEED,), 1, 2, "correction"),
    ]
    assert summary.released[0].line() == (
        "V-1 (P-1, DOS 2026-11-02): hold -> ready (version 1 -> 2, correction), "
        "resolved TIMED_UNITS_EXCEED_MINUTES"
    )
    # Only the patients asked for.
    only = summarize_statuses(records, {"P-2"})
    assert (only.records, only.visits, only.released) == (1, 1, [])
    assert summarize_statuses([]).visits == 0


def test_holds_released_lines_against_what_the_feed_meant() -> None:
    records = [
        status("V-1", 1, "hold", {"a1": EXCEED}),
        status("V-1", 2, "ready", cause="correction", resolved=("a1",)),
        status("V-2", 1, "hold", {"c2": CERT}),
        status("V-2", 2, "ready", cause="related_visit", resolved=("c2",)),
        status("V-3", 1, "hold", {"c3": CERT}),
    ]
    meant = [
        Release("P-1", "V-1", frozenset({EXCEED}), "ready"),
        Release("P-1", "V-2", frozenset({CERT}), "ready"),
        Release("P-1", "V-3", frozenset({CERT}), "ready"),
    ]
    lines = holds_released_lines(summarize_statuses(records), "status.v1", meant, unreadable=1)
    assert lines == [
        "  status.v1, from its beginning: 5 records, 3 this feed's visits (current status: "
        "hold 1, review 0, ready 2); 1 records not VisitStatus v1 skipped",
        "  holds released: 2 visits (hold at some version, now ready or review)",
        "  rule resolved                         meant released",
        "  CERTIFICATION_MISSING                     2        1   <- differs",
        "  TIMED_UNITS_EXCEED_MINUTES                1        1",
        "  meant but not released: 1 (e.g. V-3)",
        "  e.g. V-1 (P-1, DOS 2026-11-02): hold -> ready (version 1 -> 2, correction), "
        "resolved TIMED_UNITS_EXCEED_MINUTES",
        "  e.g. V-2 (P-1, DOS 2026-11-02): hold -> ready (version 1 -> 2, related_visit), "
        "resolved CERTIFICATION_MISSING",
    ]
    # Without a feed: every visit of the topic, by rule.
    whole = holds_released_lines(summarize_statuses(records), "status.v1")
    assert whole[2] == "  by rule resolved: CERTIFICATION_MISSING=1 TIMED_UNITS_EXCEED_MINUTES=1"


def test_an_empty_status_topic_is_said_so() -> None:
    meant = [Release("P-1", "V-1", frozenset({EXCEED}), "ready")]
    (line,) = holds_released_lines(summarize_statuses([]), "billing.visit.status.v1", meant)
    assert line == (
        "  billing.visit.status.v1 is empty: this worker does not publish visit statuses (yet), "
        "so no hold can be shown released; the feed meant to release 1 holds"
    )
    # Records, but none of this feed's visits.
    other = summarize_statuses([status("V-1", 1, "ready", patient="P-9")], {"P-1"})
    (line,) = holds_released_lines(other, "t", meant, read=1)
    assert line.startswith("  none of the 1 records on t is of this feed's visits")


def test_the_feed_writes_what_it_means_to_release_and_its_statuses_would_match(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """demo-feed (episodes) prints and writes the holds it means to release; statuses that
    do what the generator says (hold on the flawed event, then ready or review) give a
    summary without a difference."""
    monkeypatch.setattr(cli.demo_feed, "AIOKafkaProducer", Producer)
    settings = Settings.from_env({"TC_CREATE_TOPICS": "false"})
    out, path = io.StringIO(), tmp_path / "releases.json"
    asyncio.run(demo_feed(settings, 0, 2500, 9, 0.0, "episodes", out, releases_out=path))
    patients, meant = load_feed_releases(path.read_bytes())
    assert patients == {key.decode() for _, key, _ in Producer.sent}
    rules = released_by_rule(meant)
    assert rules[EXCEED] > 5 and rules[CERT] > 0, rules
    (line,) = [x for x in out.getvalue().splitlines() if "holds meant to be released" in x]
    assert line == (
        f"demo-feed: holds meant to be released: {len(meant)} visits; by rule resolved: "
        f"CERTIFICATION_MISSING={rules[CERT]} TIMED_UNITS_EXCEED_MINUTES={rules[EXCEED]}"
    )
    records = []
    for i, m in enumerate(meant):
        opened = {f"a{i}-{rule}": rule for rule in m.rules}
        records.append(status(m.visit_id, 1, "hold", opened, patient=m.patient_ref))
        records.append(status(m.visit_id, 2, m.to, patient=m.patient_ref, cause="correction"))
    records.append(status("V-000000001", 1, "hold", {"x": CERT}, patient="P-other"))
    lines = holds_released_lines(summarize_statuses(records, patients), "t", meant)
    assert not [x for x in lines if "differs" in x or "not released" in x], lines
    assert f"  holds released: {len(meant)} visits" in lines[1]


class Consumer:
    """aiokafka's consumer as read_statuses uses it, over fixed partitions of records."""

    partitions: ClassVar[dict[int, list[bytes | None]]] = {}

    def __init__(self, **_: Any) -> None:
        self._client = self
        self.assigned: list[TopicPartition] = []
        self.at: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def force_metadata_update(self) -> None:
        pass

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(Consumer.partitions) or None

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(Consumer.partitions[tp.partition]) for tp in tps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.at = {tp: 0 for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.at[tp]

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Any]]:
        out = {}
        for tp in tps:
            values = Consumer.partitions[tp.partition][self.at[tp] : self.at[tp] + 2]
            out[tp] = [
                SimpleNamespace(offset=self.at[tp] + i, value=v) for i, v in enumerate(values)
            ]
            self.at[tp] += len(values)
        return out


def test_holds_released_reads_the_topic_from_its_beginning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli.demo_feed, "AIOKafkaConsumer", Consumer)
    settings = Settings.from_env({"TC_CREATE_TOPICS": "false"})
    first = status("V-1", 1, "hold", {"a1": EXCEED})
    fixed = status("V-1", 2, "ready", cause="correction", resolved=("a1",))
    newer = fixed.model_dump(mode="json") | {"field_added_within_v1": 1}
    Consumer.partitions = {
        0: [first.model_dump_json().encode(), b"not json", None],
        1: [status("V-2", 1, "ready").model_dump_json().encode(), orjson.dumps(newer)],
    }
    records, unreadable = asyncio.run(read_statuses(settings))
    # Every record once (partitions are read in any order; the summary keeps the highest
    # version per visit, so the order across partitions does not matter).
    assert sorted((r.visit_id, r.version) for r in records) == [("V-1", 1), ("V-1", 2), ("V-2", 1)]
    assert unreadable == 1  # the tombstone (None) is no record, not an unreadable one
    out = io.StringIO()
    summary = asyncio.run(holds_released(settings, None, out))
    assert [r.visit_id for r in summary.released] == ["V-1"]
    assert "holds released: 1 visits" in out.getvalue()
    # A topic without partitions (not created: a worker without the status topic) is empty.
    Consumer.partitions = {}
    out = io.StringIO()
    asyncio.run(holds_released(settings, None, out))
    assert "billing.visit.status.v1 is empty" in out.getvalue()
