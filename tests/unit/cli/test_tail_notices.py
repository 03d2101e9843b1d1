"""`tail-notices` (cli/tail_notices.py): the readable line, the filters (patient, kind, due
within), a re-sent notice printed once, bad records warned about and skipped; and the consuming
loop with a stand-in consumer (no broker)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

import cli.tail_alerts
from cli.main import parser
from cli.tail_notices import (
    NoticeTail,
    format_notice,
    parse_kinds,
    parse_notice,
    tail_notices,
)
from cli.tail_status import Output
from runtime.settings import Settings
from schemas.common import Discipline
from schemas.notice import ComplianceNotice, NoticeKind

TODAY = date(2026, 3, 26)


def notice(
    notice_id: str = "n-1",
    kind: NoticeKind = NoticeKind.CERTIFICATION_DUE,
    patient_ref: str = "P-88f1",
    episode_ref: str | None = None,
    episode_start: date | None = date(2026, 3, 2),
    due_by: date | None = date(2026, 4, 1),
    due_at_treatment_day: int | None = None,
    as_of: date = TODAY,
    message: str = "Physician/NPP certification of the plan of care due by 2026-04-01 "
    "(first day + 30).",
) -> ComplianceNotice:
    return ComplianceNotice(
        notice_id=notice_id,
        kind=kind,
        patient_ref=patient_ref,
        episode_ref=episode_ref,
        discipline=Discipline.PT,
        payer_id="MEDICARE-B",
        episode_start=episode_start,
        due_by=due_by,
        due_at_treatment_day=due_at_treatment_day,
        message=message,
        observed={"days_since_start": 24},
        as_of=as_of,
        created_at=datetime(2026, 3, 26, 7, 0, 2, tzinfo=UTC),
    )


def raw(n: ComplianceNotice) -> bytes:
    return n.model_dump_json().encode()


CERT = notice()
PROGRESS = notice(
    notice_id="n-2",
    kind=NoticeKind.PROGRESS_REPORT_DUE,
    episode_ref="EP-7",
    due_by=None,
    due_at_treatment_day=10,
    as_of=date(2026, 3, 20),
    message="Progress report by the clinician due by treatment day 10 of the period that "
    "began 2026-03-02: this visit is treatment day 8.",
)
KX = notice(
    notice_id="n-3",
    kind=NoticeKind.KX_THRESHOLD_NEAR,
    patient_ref="P-2",
    episode_start=None,
    due_by=None,
    as_of=date(2026, 3, 10),
    message="KX needed after $2,480.00 in 2026 (PT and SLP): this patient is at $2,300.00.",
)


# -- the line ------------------------------------------------------------------------------


def test_a_notice_reads_as_one_line() -> None:
    assert format_notice(CERT) == (
        "2026-03-26  CERTIFICATION_DUE           P-88f1  PT episode from 2026-03-02  "
        "due 2026-04-01: Physician/NPP certification of the plan of care due by 2026-04-01 "
        "(first day + 30)."
    )


def test_an_ehr_episode_is_named_by_its_ref_and_a_progress_report_by_its_treatment_day() -> None:
    line = format_notice(PROGRESS)
    assert line.startswith(
        "2026-03-20  PROGRESS_REPORT_DUE         P-88f1  PT episode EP-7  by treatment day 10: "
    )


def test_a_kx_notice_has_no_episode_and_no_due_date() -> None:
    assert format_notice(KX).startswith(
        "2026-03-10  KX_THRESHOLD_NEAR           P-2  PT  no due date: KX needed after "
    )


def test_the_kind_column_is_as_wide_as_the_longest_kind() -> None:
    line = format_notice(notice(kind=NoticeKind.VERBAL_ORDER_SIGNATURE_DUE))
    assert line.startswith("2026-03-26  VERBAL_ORDER_SIGNATURE_DUE  P-88f1  ")


# -- the filters and the duplicates ----------------------------------------------------------


def shown(tail: NoticeTail, *records: ComplianceNotice | bytes | None) -> list[str]:
    outputs = [
        tail.take(r if r is None or isinstance(r, bytes) else raw(r), f"offset {i}")
        for i, r in enumerate(records)
    ]
    return [o.text for o in outputs if o is not None]


def test_a_re_sent_notice_is_printed_once() -> None:
    # The daily run's catch-up or a re-delivery re-sends a notice with the same id (and possibly
    # a later as_of / created_at): the obligation is the same.
    again = notice(as_of=date(2026, 3, 27))
    assert shown(NoticeTail(), CERT, PROGRESS, again, CERT) == [
        format_notice(CERT),
        format_notice(PROGRESS),
    ]


def test_patient_shows_only_that_patient() -> None:
    assert shown(NoticeTail(patient="P-2"), CERT, KX, PROGRESS) == [format_notice(KX)]


def test_kind_shows_only_those_kinds() -> None:
    tail = NoticeTail(kinds=frozenset({NoticeKind.KX_THRESHOLD_NEAR, NoticeKind.CERTIFICATION_DUE}))
    assert shown(tail, CERT, PROGRESS, KX) == [format_notice(CERT), format_notice(KX)]


@pytest.mark.parametrize(
    ("due_by", "days", "shown_"),
    [
        (date(2026, 4, 1), 6, True),  # today + 6: the last day within 6
        (date(2026, 4, 2), 6, False),
        (TODAY, 0, True),  # due today
        (date(2026, 3, 25), 7, False),  # already past: an alert's business by now
    ],
)
def test_due_within_counts_due_by_from_today(due_by: date, days: int, shown_: bool) -> None:
    tail = NoticeTail(due_within=days, today=TODAY)
    assert bool(shown(tail, notice(due_by=due_by))) is shown_


@pytest.mark.parametrize(
    ("as_of", "days", "shown_"),
    [
        (date(2026, 3, 20), 6, True),  # six days ago
        (date(2026, 3, 19), 6, False),
        (TODAY, 0, True),
    ],
)
def test_due_within_reads_as_of_for_a_kind_without_due_by(
    as_of: date, days: int, shown_: bool
) -> None:
    tail = NoticeTail(due_within=days, today=TODAY)
    progress = notice(
        kind=NoticeKind.PROGRESS_REPORT_DUE, due_by=None, due_at_treatment_day=10, as_of=as_of
    )
    assert bool(shown(tail, progress)) is shown_


def test_filters_together() -> None:
    tail = NoticeTail(
        patient="P-88f1",
        kinds=frozenset({NoticeKind.PROGRESS_REPORT_DUE}),
        due_within=7,
        today=TODAY,
    )
    assert shown(tail, CERT, KX, PROGRESS) == [format_notice(PROGRESS)]


def test_json_prints_the_record_as_received_once() -> None:
    tail = NoticeTail(as_json=True)
    assert shown(tail, CERT, CERT) == [raw(CERT).decode()]
    assert ComplianceNotice.model_validate_json(shown(tail, KX)[0]) == KX


def test_a_tombstone_prints_nothing() -> None:
    assert NoticeTail().take(None, "offset 0") is None


# -- --kind values -----------------------------------------------------------------------------


def test_kinds_are_repeatable_comma_lists_in_any_case() -> None:
    assert parse_kinds(["certification_due, KX_THRESHOLD_NEAR", "PROGRESS_REPORT_DUE", ""]) == {
        NoticeKind.CERTIFICATION_DUE,
        NoticeKind.KX_THRESHOLD_NEAR,
        NoticeKind.PROGRESS_REPORT_DUE,
    }
    assert parse_kinds([]) == frozenset()


def test_an_unknown_kind_names_itself_and_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown notice kind 'CERT_DUE'") as exc:
        parse_kinds(["KX_THRESHOLD_NEAR,CERT_DUE"])
    for kind in NoticeKind:
        assert kind.value in str(exc.value)


def test_the_command_line() -> None:
    args = parser().parse_args(
        [
            "tail-notices",
            "--patient",
            "P-9",
            "--kind",
            "CERTIFICATION_DUE,RECERTIFICATION_DUE",
            "--kind",
            "kx_threshold_near",
            "--due-within",
            "7",
            "--limit",
            "3",
        ]
    )
    assert (args.patient, args.due_within, args.from_beginning, args.json, args.limit) == (
        "P-9",
        7,
        False,
        False,
        3,
    )
    assert parse_kinds(args.kind) == {
        NoticeKind.CERTIFICATION_DUE,
        NoticeKind.RECERTIFICATION_DUE,
        NoticeKind.KX_THRESHOLD_NEAR,
    }


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--kind", "CERT"], "unknown notice kind 'CERT' (one of: PROGRESS_REPORT_DUE, "),
        (["--due-within", "-1"], "a number of days is 0 or more"),
        (["--due-within", "week"], "not a number of days"),
    ],
)
def test_a_bad_option_is_a_usage_error(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["tail-notices", *argv])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


def test_the_help_names_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["tail-notices", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for kind in NoticeKind:
        assert kind.value in text


# -- bad records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not json {", "not JSON"),
        (b"[1, 2]", "not a valid ComplianceNotice v1: (record): "),
        (raw(CERT).replace(b'"CERTIFICATION_DUE"', b'"PAY_NOW"'), "kind: "),
        (raw(CERT).replace(b'"schema_version":1', b'"schema_version":2'), "schema_version: "),
    ],
)
def test_a_bad_record_is_one_warning_line_and_is_skipped(value: bytes, says: str) -> None:
    tail = NoticeTail()
    out = tail.take(value, "partition 1 offset 9")
    assert isinstance(out, Output) and out.warning
    assert out.text.startswith(
        "therapy-compliance tail-notices: skipped the record at partition 1 offset 9: "
    )
    assert says in out.text
    assert tail.seen == set()
    assert shown(tail, CERT) == [format_notice(CERT)]  # and the tail goes on


def test_a_bad_record_warning_never_echoes_its_values() -> None:
    leaked = raw(CERT).replace(b'"P-88f1"', b'"Jane Doe\\u0000 1961-02-03"')
    text = parse_notice(leaked)
    assert isinstance(text, str)
    assert text.startswith("not a valid ComplianceNotice v1: patient_ref: ")
    assert "Jane" not in text and "1961" not in text


# -- the loop ------------------------------------------------------------------------------


class Consumer:
    """aiokafka's consumer as tail_notices uses it: start, iterate, stop."""

    records: ClassVar[list[bytes | None]] = []
    made: ClassVar[list[tuple[tuple[str, ...], dict[str, Any]]]] = []

    def __init__(self, *topics: str, **kwargs: Any) -> None:
        Consumer.made.append((topics, kwargs))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def __aiter__(self) -> Any:
        return self._messages()

    async def _messages(self) -> Any:
        for offset, value in enumerate(Consumer.records):
            yield SimpleNamespace(partition=0, offset=offset, value=value)


def test_the_loop_reads_the_notice_topic_and_stops_after_limit_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli.tail_alerts, "AIOKafkaConsumer", Consumer)
    Consumer.made = []
    Consumer.records = [None, b"{oops", raw(CERT), raw(CERT), raw(PROGRESS), raw(KX)]
    settings = Settings.from_env({"TC_TOPIC_NOTICES": "t.notices"})
    out, err = io.StringIO(), io.StringIO()
    n = asyncio.run(tail_notices(settings, NoticeTail(), True, 2, out, err))
    assert n == 2
    assert out.getvalue().splitlines() == [format_notice(CERT), format_notice(PROGRESS)]
    assert err.getvalue() == (
        "therapy-compliance tail-notices: skipped the record at partition 0 offset 1: not JSON\n"
    )
    ((topics, kwargs),) = Consumer.made
    assert topics == ("t.notices",)
    assert kwargs["auto_offset_reset"] == "earliest" and kwargs["group_id"] is None


def test_the_loop_from_now_on_reads_the_default_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.tail_alerts, "AIOKafkaConsumer", Consumer)
    Consumer.made = []
    Consumer.records = [raw(KX)]
    out, err = io.StringIO(), io.StringIO()
    n = asyncio.run(tail_notices(Settings.from_env({}), NoticeTail(), False, None, out, err))
    assert n == 1 and err.getvalue() == ""
    ((topics, kwargs),) = Consumer.made
    assert topics == ("clinic.compliance.notice.v1",)
    assert kwargs["auto_offset_reset"] == "latest"
