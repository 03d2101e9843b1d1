"""`VisitStatus` v1 records (EVENTS.md "VisitStatus v1"): one current truth per visit for
billing. Pure: the caller passes the time. Built as JSON-ready dicts like the alerts
(compliance/alerts.py); tests validate every shape against the strict model (`model()`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from compliance.alerts import AlertEvent, money
from compliance.records import SEEN_EVENT_IDS, OpenAlert, StatusState, VisitRecord
from schemas.visit_status import BillingStatus, StatusCause, VisitStatus

_JSON_OPTS = orjson.OPT_UTC_Z


class StatusEvent(msgspec.Struct, frozen=True):
    """A `VisitStatus` v1 ready to publish (key: `visit_id`). A Struct, as `Subject`: built
    per status, for a fraction of a frozen dataclass's __init__."""

    visit_id: str
    status: BillingStatus
    cause: StatusCause
    version: int
    body: dict[str, Any]
    #: The open alerts before and after (for the tally of what is on hold).
    was: tuple[OpenAlert, ...] = ()
    open: tuple[OpenAlert, ...] = ()

    def to_json(self) -> bytes:
        return orjson.dumps(self.body, option=_JSON_OPTS)

    def model(self) -> VisitStatus:
        """The strictly validated contract model (tests, tools; not the hot path)."""
        return VisitStatus.model_validate_json(self.to_json())


def open_alerts(alerts: Sequence[AlertEvent], scopes: Sequence[str]) -> tuple[OpenAlert, ...]:
    """The alerts as kept in a visit's status, in one order (rule id, then alert id);
    `scopes`: each alert's rule family scope (compliance/rules Scope)."""
    out = [
        OpenAlert(
            a.alert_id,
            a.rule_id,
            a.severity,
            tuple(a.body["line_ids"]),
            a.body.get("amount_at_risk"),
            scope,
        )
        for a, scope in zip(alerts, scopes, strict=True)
    ]
    return tuple(sorted(out, key=_order))


def merged(kept: Iterable[OpenAlert], new: Iterable[OpenAlert]) -> tuple[OpenAlert, ...]:
    return tuple(sorted([*kept, *new], key=_order))


def _order(a: OpenAlert) -> tuple[str, str]:
    return (a.rule_id, a.alert_id)


def billing_status(open_: Sequence[OpenAlert]) -> BillingStatus:
    """`hold` with an open error, `review` with open warnings only, else `ready` (EVENTS.md)."""
    severities = {a.severity for a in open_}
    if "error" in severities:
        return BillingStatus.HOLD
    if "warning" in severities:
        return BillingStatus.REVIEW
    return BillingStatus.READY


def amount_at_risk(open_: Sequence[OpenAlert]) -> str | None:
    """The sum of the open alerts' known amounts; None when none is known."""
    known = [Decimal(a.amount_at_risk) for a in open_ if a.amount_at_risk is not None]
    return money(sum(known, Decimal(0))) if known else None


def ids(open_: Sequence[OpenAlert]) -> frozenset[str]:
    return frozenset(a.alert_id for a in open_)


def next_state(
    previous: StatusState | None,
    open_: tuple[OpenAlert, ...],
    forgotten: Iterable[str] = (),
) -> StatusState:
    """The visit's status after this one is published; `forgotten`: event ids of versions
    the history no longer keeps (remembered, bounded, to recognise their re-delivery)."""
    seen = (*(previous.seen if previous is not None else ()), *forgotten)
    return StatusState(
        previous.version + 1 if previous is not None else 1,
        open_,
        tuple(seen[-SEEN_EVENT_IDS:]),
    )


class Subject(msgspec.Struct, frozen=True):
    """The visit a status is about: its current event."""

    visit_id: str
    patient_ref: str
    date_of_service: date
    payer_id: str
    discipline: str
    event_id: str

    @classmethod
    def of(cls, record: VisitRecord, patient_ref: str) -> Subject:
        assert record.payer is not None
        return cls(
            record.visit_id,
            patient_ref,
            record.date_of_service,
            record.payer.payer_id,
            record.discipline,
            record.event_id,
        )


def build_status(
    subject: Subject,
    previous: StatusState | None,
    state: StatusState,
    cause: StatusCause,
    cause_event: tuple[str, str],
    updated_at: datetime,
    engine_version: str,
    ruleset_version: str,
) -> StatusEvent:
    """`cause_event`: (event_id, visit_id) of the event that caused the status."""
    open_ = state.open
    status = billing_status(open_)
    resolved = sorted(ids(previous.open) - ids(open_)) if previous is not None else []
    body = {
        "schema_version": 1,
        "visit_id": subject.visit_id,
        "patient_ref": subject.patient_ref,
        "date_of_service": subject.date_of_service,
        "payer_id": subject.payer_id,
        "discipline": subject.discipline,
        "event_id": subject.event_id,
        "status": status.value,
        "open_alerts": [
            {
                "alert_id": a.alert_id,
                "rule_id": a.rule_id,
                "severity": a.severity,
                "line_ids": list(a.line_ids),
                "amount_at_risk": a.amount_at_risk,
            }
            for a in open_
        ],
        "resolved_alert_ids": resolved,
        "amount_at_risk": amount_at_risk(open_),
        "cause": {"event_id": cause_event[0], "visit_id": cause_event[1], "kind": cause.value},
        "version": state.version,
        "ruleset_version": ruleset_version,
        "engine_version": engine_version,
        "updated_at": updated_at,
    }
    was = previous.open if previous is not None else ()
    return StatusEvent(subject.visit_id, status, cause, state.version, body, was, open_)


class Tally(msgspec.Struct, array_like=True, gc=False):
    """What the current statuses of a partition's visits hold open, kept with the partition's
    state (the worker's gauges of visits on hold; no visit ids): visits on hold, their amount at
    risk, and open alerts and their known amounts by rule id."""

    hold: int = 0
    hold_cents: int = 0
    #: "rule_id severity" -> open alerts.
    alerts: dict[str, int] = msgspec.field(default_factory=dict)
    #: rule_id -> known amount at risk of its open alerts, in cents.
    cents: dict[str, int] = msgspec.field(default_factory=dict)

    def add(self, event: StatusEvent) -> None:
        """Count `event`'s visit as it is now instead of as it was (in place)."""
        self._count(event.was, -1)
        self._count(event.open, +1)

    def _count(self, open_: tuple[OpenAlert, ...], sign: int) -> None:
        if not open_ and sign < 0:
            return
        if billing_status(open_) is BillingStatus.HOLD:
            self.hold += sign
            self.hold_cents += sign * _cents(amount_at_risk(open_))
        for a in open_:
            key = f"{a.rule_id} {a.severity}"
            self.alerts[key] = self.alerts.get(key, 0) + sign
            if not self.alerts[key]:
                del self.alerts[key]
            if a.amount_at_risk is not None:
                cents = self.cents.get(a.rule_id, 0) + sign * _cents(a.amount_at_risk)
                if cents:
                    self.cents[a.rule_id] = cents
                else:
                    self.cents.pop(a.rule_id, None)


def _cents(amount: str | None) -> int:
    return int(Decimal(amount) * 100) if amount is not None else 0


_TALLY = msgspec.msgpack.Decoder(Tally)
_ENCODER = msgspec.msgpack.Encoder()


def tally_of(raw: bytes | None) -> Tally:
    return _TALLY.decode(raw) if raw else Tally()


def tally_bytes(tally: Tally) -> bytes:
    return _ENCODER.encode(tally)


__all__ = [
    "StatusEvent",
    "Subject",
    "Tally",
    "amount_at_risk",
    "billing_status",
    "build_status",
    "ids",
    "merged",
    "next_state",
    "open_alerts",
    "tally_bytes",
    "tally_of",
]
