"""`tail-status`: the visit status topic (`billing.visit.status.v1`) as a person reads it.

The topic is a table keyed by `visit_id` (compacted, at-least-once): for each visit only a
record whose `version` is above the highest one already seen is news; a repeat (same or lower
version, after a worker's crash) is ignored. Everything here but `tail_status` is pure (no
broker): `StatusTail.take` decides what one record prints.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

from pydantic import BaseModel, ValidationError

from cli.tail_alerts import start, tail_consumer
from runtime.settings import Settings
from schemas.visit_status import BillingStatus, StatusCause, VisitStatus

STATUS_MARK = {
    BillingStatus.HOLD: "HOLD  ",
    BillingStatus.REVIEW: "REVIEW",
    BillingStatus.READY: "READY ",
}
_MAX_ERRORS_SHOWN = 3

M = TypeVar("M", bound=BaseModel)


def format_status(status: VisitStatus) -> str:
    """One readable line: status, visit, DOS, payer, version, cause, amount at risk, the open
    alerts' rule ids (each once, `xN` when it is open on N lines) and `resolved N` if any."""
    cause = status.cause.kind.value
    if status.cause.kind is StatusCause.RELATED_VISIT:
        cause += f" {status.cause.visit_id}"
    rules = Counter(a.rule_id for a in status.open_alerts)
    open_rules = ", ".join(r if n == 1 else f"{r} x{n}" for r, n in rules.items()) or "-"
    if status.amount_at_risk is not None:
        at_risk = f"${status.amount_at_risk}"
    else:
        at_risk = "unknown" if status.open_alerts else "-"
    line = (
        f"{STATUS_MARK[status.status]} {status.visit_id}  DOS {status.date_of_service}  "
        f"{status.payer_id}  v{status.version}  cause {cause}  at risk {at_risk}  "
        f"open {open_rules}"
    )
    if status.resolved_alert_ids:
        line += f"  resolved {len(status.resolved_alert_ids)}"
    return line


def parse_status(raw: bytes) -> VisitStatus | str:
    """The record's `VisitStatus`, or why it is not one (field paths and rules only, never the
    record's values)."""
    return parse_record(raw, VisitStatus, "VisitStatus v1")


def parse_record(raw: bytes, model: type[M], name: str) -> M | str:
    """The record as `model`, or why it is not one (`name`: the contract's name for it): field
    paths and rules only, never the record's values."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return "not JSON"
        shown = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}"
            for e in errors[:_MAX_ERRORS_SHOWN]
        )
        extra = len(errors) - _MAX_ERRORS_SHOWN
        more = f" (and {extra} more)" if extra > 0 else ""
        return f"not a valid {name}: {shown}{more}"


@dataclass(frozen=True, slots=True)
class Output:
    text: str
    #: A warning about a bad record, for standard error.
    warning: bool = False


@dataclass(slots=True)
class StatusTail:
    """What `tail-status` prints, one record at a time, in topic order."""

    #: Only this visit (`--visit`).
    visit: str | None = None
    #: Only records whose status is `hold` (`--hold`).
    hold_only: bool = False
    #: Print the record's JSON as received instead of the readable line (`--json`).
    as_json: bool = False
    #: The highest version seen per visit, whether or not it was printed: a repeat of an older
    #: `hold` after a newer `ready` is not news under `--hold` either.
    versions: dict[str, int] = field(default_factory=dict)

    def take(self, raw: bytes | None, where: str) -> Output | None:
        """The line to print for one record's value, a warning for a bad one, or None: a
        tombstone, another visit, a repeat or an older version, or not on hold under `--hold`.
        `where` names the record in a warning (partition and offset)."""
        if raw is None:
            return None
        status = parse_status(raw)
        if isinstance(status, str):
            warning = f"therapy-compliance tail-status: skipped the record at {where}: {status}"
            return Output(warning, warning=True)
        if self.visit is not None and status.visit_id != self.visit:
            return None
        if status.version <= self.versions.get(status.visit_id, 0):
            return None
        self.versions[status.visit_id] = status.version
        if self.hold_only and status.status is not BillingStatus.HOLD:
            return None
        if self.as_json:
            return Output(raw.decode("utf-8", "replace").rstrip("\n"))
        return Output(format_status(status))


async def tail_status(
    settings: Settings,
    tail: StatusTail,
    from_beginning: bool,
    limit: int | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Follow the status topic, printing what `tail` decides; stop after `limit` lines."""
    return await follow(settings, settings.topic_status, tail.take, from_beginning, limit, out, err)


async def follow(
    settings: Settings,
    topic: str,
    take: Callable[[bytes | None, str], Output | None],
    from_beginning: bool,
    limit: int | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Follow `topic`, printing what `take` makes of each record (warnings on `err`); stop
    after `limit` lines printed on `out`. Returns the lines printed."""
    consumer = tail_consumer(settings, topic, from_beginning)
    await start(consumer)
    shown = 0
    try:
        async for msg in consumer:
            output = take(msg.value, f"partition {msg.partition} offset {msg.offset}")
            if output is None:
                continue
            stream = err if output.warning else out
            stream.write(output.text + "\n")
            stream.flush()
            if not output.warning:
                shown += 1
                if limit is not None and shown >= limit:
                    break
    finally:
        await consumer.stop()
    return shown
