"""`tail-status` (cli/tail_status.py): the readable line, the filters, the highest version per
visit (the topic is a compacted, at-least-once table), bad records warned about and skipped; and
the consuming loop with a stand-in consumer (no broker)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

import cli.tail_alerts
import cli.tail_status
from cli.main import parser
from cli.tail_status import Output, StatusTail, format_status, parse_status, tail_status
from runtime.settings import Settings
from schemas.common import Discipline, Severity
from schemas.visit_status import BillingStatus, Cause, OpenAlert, StatusCause, VisitStatus


def alert(
    rule_id: str, severity: Severity = Severity.ERROR, amount: str | None = "31.12"
) -> OpenAlert:
    return OpenAlert(
        alert_id=f"a-{rule_id}-{amount}",
        rule_id=rule_id,
        severity=severity,
        line_ids=[],
        amount_at_risk=amount,
    )


def status(
    visit_id: str = "V-1",
    version: int = 1,
    state: BillingStatus = BillingStatus.HOLD,
    open_alerts: tuple[OpenAlert, ...] = (),
    resolved: tuple[str, ...] = (),
    amount: str | None = None,
    cause: StatusCause = StatusCause.VISIT,
    cause_visit: str | None = None,
) -> VisitStatus:
    return VisitStatus(
        visit_id=visit_id,
        patient_ref="P-88f1",
        date_of_service=date(2026, 3, 2),
        payer_id="MEDICARE-B",
        discipline=Discipline.PT,
        event_id=f"e-{visit_id}-{version}",
        status=state,
        open_alerts=list(open_alerts),
        resolved_alert_ids=list(resolved),
        amount_at_risk=amount,
        cause=Cause(event_id="e-x", visit_id=cause_visit or visit_id, kind=cause),
        version=version,
        ruleset_version="2026q1",
        engine_version="1.0",
        updated_at=datetime(2026, 3, 9, 15, 4, 6, tzinfo=UTC),
    )


def raw(s: VisitStatus) -> bytes:
    return s.model_dump_json().encode()


HELD = status(
    open_alerts=(alert("CERTIFICATION_MISSING"),),
    amount="31.12",
)
RELEASED = status(
    version=2,
    state=BillingStatus.READY,
    resolved=("a-CERTIFICATION_MISSING-31.12",),
    cause=StatusCause.RELATED_VISIT,
    cause_visit="V-7",
)


# -- the line ------------------------------------------------------------------------------


def test_a_held_visit_reads_as_one_line() -> None:
    assert format_status(HELD) == (
        "HOLD   V-1  DOS 2026-03-02  MEDICARE-B  v1  cause visit  at risk $31.12  "
        "open CERTIFICATION_MISSING"
    )


def test_a_released_visit_names_the_related_visit_and_what_it_resolved() -> None:
    assert format_status(RELEASED) == (
        "READY  V-1  DOS 2026-03-02  MEDICARE-B  v2  cause related_visit V-7  at risk -  "
        "open -  resolved 1"
    )


def test_open_rules_are_listed_once_each_with_a_count_and_an_unknown_amount_says_so() -> None:
    s = status(
        version=3,
        state=BillingStatus.REVIEW,
        open_alerts=(
            alert("TIMED_MINUTES_MISSING", Severity.WARNING, None),
            alert("UNKNOWN_CODE", Severity.WARNING, None),
            alert("TIMED_MINUTES_MISSING", Severity.WARNING, None),
        ),
        resolved=("r1", "r2"),
        cause=StatusCause.CORRECTION,
    )
    line = format_status(s)
    assert line.startswith("REVIEW V-1  DOS 2026-03-02  MEDICARE-B  v3  cause correction  ")
    assert "at risk unknown  open TIMED_MINUTES_MISSING x2, UNKNOWN_CODE  resolved 2" in line
    assert line.endswith("resolved 2")


def test_no_resolved_part_when_nothing_was_resolved() -> None:
    assert "resolved" not in format_status(HELD)


# -- the table: highest version per visit, filters -----------------------------------------


def shown(tail: StatusTail, *records: VisitStatus | bytes | None) -> list[str]:
    outputs = [
        tail.take(r if r is None or isinstance(r, bytes) else raw(r), f"offset {i}")
        for i, r in enumerate(records)
    ]
    return [o.text for o in outputs if o is not None]


def test_a_repeat_or_an_older_version_is_not_shown_again() -> None:
    lines = shown(StatusTail(), HELD, HELD, RELEASED, RELEASED, HELD)
    assert lines == [format_status(HELD), format_status(RELEASED)]


def test_versions_are_kept_per_visit() -> None:
    other = status(visit_id="V-2")
    lines = shown(StatusTail(), HELD, other, RELEASED, status(visit_id="V-2"))
    assert [line.split()[1] for line in lines] == ["V-1", "V-2", "V-1"]


def test_a_version_above_the_next_one_is_shown_gaps_and_all() -> None:
    """A compacted topic read from the beginning may hold only a visit's latest version."""
    assert shown(StatusTail(), status(version=5)) == [format_status(status(version=5))]


def test_visit_shows_only_that_visit() -> None:
    lines = shown(StatusTail(visit="V-2"), HELD, status(visit_id="V-2"), RELEASED)
    assert lines == [format_status(status(visit_id="V-2"))]


def test_hold_shows_only_hold_and_a_stale_hold_after_a_release_stays_hidden() -> None:
    again = status(version=3, open_alerts=(alert("KX_MODIFIER_MISSING"),), amount="12.50")
    tail = StatusTail(hold_only=True)
    lines = shown(tail, HELD, RELEASED, HELD, again)
    # v1 on hold; v2 ready (not shown, but it is the visit's current version: the repeated v1
    # after it is stale, not a new hold); v3 on hold again.
    assert lines == [format_status(HELD), format_status(again)]
    assert tail.versions == {"V-1": 3}


def test_hold_and_visit_together() -> None:
    lines = shown(
        StatusTail(visit="V-1", hold_only=True),
        status(visit_id="V-2"),
        HELD,
        RELEASED,
    )
    assert lines == [format_status(HELD)]


def test_json_prints_the_record_as_received() -> None:
    tail = StatusTail(as_json=True)
    assert shown(tail, HELD, HELD) == [raw(HELD).decode()]
    assert VisitStatus.model_validate_json(shown(tail, RELEASED)[0]) == RELEASED


def test_a_tombstone_prints_nothing() -> None:
    assert StatusTail().take(None, "offset 0") is None


# -- bad records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not json {", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not a valid VisitStatus v1: (record): "),
        (raw(HELD).replace(b'"hold"', b'"paid"'), "not a valid VisitStatus v1: status: "),
        (raw(HELD).replace(b'"version":1', b'"version":0'), "version: "),
        (raw(HELD).replace(b'"schema_version":1', b'"schema_version":2'), "schema_version: "),
    ],
)
def test_a_bad_record_is_one_warning_line_and_is_skipped(value: bytes, says: str) -> None:
    tail = StatusTail()
    out = tail.take(value, "partition 2 offset 41")
    assert isinstance(out, Output) and out.warning
    assert out.text.startswith(
        "therapy-compliance tail-status: skipped the record at partition 2 offset 41: "
    )
    assert says in out.text
    assert "\n" not in out.text
    assert tail.versions == {}
    assert shown(tail, HELD) == [format_status(HELD)]  # and the tail goes on


def test_a_bad_record_warning_never_echoes_its_values() -> None:
    leaked = raw(HELD).replace(b'"P-88f1"', b'"Jane Doe\\u0000 1961-02-03"')
    text = parse_status(leaked)
    assert isinstance(text, str)
    assert text.startswith("not a valid VisitStatus v1: patient_ref: ")
    assert "Jane" not in text and "1961" not in text


def test_many_errors_are_summarised() -> None:
    text = parse_status(b"{}")
    assert isinstance(text, str) and text.endswith("more)")
    assert text.count(";") == 2


# -- the command and its loop --------------------------------------------------------------


def test_the_command_line() -> None:
    args = parser().parse_args(["tail-status", "--visit", "V-9", "--hold", "--limit", "3"])
    assert (args.visit, args.hold, args.from_beginning, args.json, args.limit) == (
        "V-9",
        True,
        False,
        False,
        3,
    )


class Consumer:
    """aiokafka's consumer as tail_status uses it: start, iterate, stop."""

    records: ClassVar[list[bytes | None]] = []
    made: ClassVar[list[tuple[tuple[str, ...], dict[str, Any]]]] = []

    def __init__(self, *topics: str, **kwargs: Any) -> None:
        Consumer.made.append((topics, kwargs))
        self.stopped = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def __aiter__(self) -> Any:
        return self._messages()

    async def _messages(self) -> Any:
        for offset, value in enumerate(Consumer.records):
            yield SimpleNamespace(partition=0, offset=offset, value=value)


def test_the_loop_reads_the_status_topic_and_stops_after_limit_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli.tail_alerts, "AIOKafkaConsumer", Consumer)
    Consumer.made = []
    third = status(visit_id="V-3", state=BillingStatus.READY)
    Consumer.records = [None, b"{oops", raw(HELD), raw(HELD), raw(RELEASED), raw(third)]
    settings = Settings.from_env({"TC_TOPIC_STATUS": "t.status"})
    out, err = io.StringIO(), io.StringIO()
    n = asyncio.run(tail_status(settings, StatusTail(), True, 2, out, err))
    assert n == 2
    assert out.getvalue().splitlines() == [format_status(HELD), format_status(RELEASED)]
    assert err.getvalue() == (
        "therapy-compliance tail-status: skipped the record at partition 0 offset 1: not JSON\n"
    )
    ((topics, kwargs),) = Consumer.made
    assert topics == ("t.status",)
    assert kwargs["auto_offset_reset"] == "earliest" and kwargs["group_id"] is None
