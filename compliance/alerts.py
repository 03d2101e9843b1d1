"""Findings -> `ComplianceAlert` / `VisitChecked` v1 events. Pure: the caller passes the time.

Events are built as JSON-ready dicts and encoded with orjson: building and dumping the strict
pydantic models per alert cost more than all the rules together (bench/RESULTS.md). The tests
validate every shape produced here against the strict contract models (`*.model()` below).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec
import orjson

from compliance.findings import Finding
from schemas.alert import ComplianceAlert
from schemas.checked import VisitChecked
from schemas.common import VisitStatus
from schemas.visit import TherapyVisitCompleted

#: Fixed namespace so alert ids are the same in every process and release (uuid5 of it).
ALERT_NAMESPACE = uuid.UUID("5d0f3c8e-8a64-4a8e-9d1f-7c1b2a3e4f50")
_JSON_OPTS = orjson.OPT_UTC_Z
#: uuid5(ns, name) is SHA-1 over ns.bytes + name: the namespace's part is hashed once, copied.
_NS_SHA1 = hashlib.sha1(ALERT_NAMESPACE.bytes, usedforsecurity=False)
#: RFC 4122 sec. 4.3 as uuid.UUID(bytes=..., version=5) sets them: version 5, variant 10.
_CLEAR_BITS = ~((0xF000 << 64) | (0xC000 << 48))
_SET_BITS = (0x5000 << 64) | (0x8000 << 48)


def money(amount: Decimal | None) -> str | None:
    """USD decimal string to the cent (half up), or None; never negative."""
    if amount is None:
        return None
    return str(max(amount, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def alert_id(event_id: str, rule_id: str, line_ids: Iterable[str]) -> str:
    """Deterministic: the same (event_id, rule_id, set of line_ids) always gives the same id, so a
    re-delivered event yields the same alerts and billing can de-duplicate (EVENTS.md).
    Fields are joined with separators that cannot occur in them (opaque refs are printable
    ASCII), so ("a|b", "c") and ("a", "b|c") cannot collide."""
    return _alert_id_sorted(event_id, rule_id, sorted(line_ids))


def _alert_id_sorted(event_id: str, rule_id: str, line_ids: list[str]) -> str:
    """`str(uuid.uuid5(ALERT_NAMESPACE, key))` computed without the UUID object (6.1 -> 2.5 us
    an id, bench/RESULTS.md); tests/unit/compliance/test_alert_ids.py holds ids recorded from uuid5."""
    h = _NS_SHA1.copy()
    h.update("\x1f".join((event_id, rule_id, "\x1e".join(line_ids))).encode())
    x = (int.from_bytes(h.digest()[:16], "big") & _CLEAR_BITS) | _SET_BITS
    s = f"{x:032x}"
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


class AlertEvent(msgspec.Struct, frozen=True):
    """A `ComplianceAlert` v1 ready to publish. A Struct, as `CheckedEvent`: built per alert,
    for a fraction of a frozen dataclass's __init__."""

    alert_id: str
    rule_id: str
    severity: str
    body: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps(self.body, option=_JSON_OPTS)

    def model(self) -> ComplianceAlert:
        """The strictly validated contract model (tests, tools; not the hot path)."""
        return ComplianceAlert.model_validate_json(self.to_json())


class CheckedEvent(msgspec.Struct, frozen=True):
    """A `VisitChecked` v1 ready to publish."""

    status: VisitStatus
    body: dict[str, Any]

    def to_json(self) -> bytes:
        return orjson.dumps(self.body, option=_JSON_OPTS)

    def model(self) -> VisitChecked:
        return VisitChecked.model_validate_json(self.to_json())


def build_alerts(
    visit: TherapyVisitCompleted,
    findings: Sequence[Finding],
    detected_at: datetime,
    engine_version: str,
    ruleset_version: str | None = None,
) -> list[AlertEvent]:
    out = []
    for f in findings:
        line_ids = sorted(f.line_ids)
        aid = _alert_id_sorted(visit.event_id, f.rule_id.value, line_ids)
        severity = f.severity.value
        out.append(
            AlertEvent(
                aid,
                f.rule_id.value,
                severity,
                {
                    "schema_version": 1,
                    "alert_id": aid,
                    "rule_id": f.rule_id.value,
                    "severity": severity,
                    "visit_id": visit.visit_id,
                    "event_id": visit.event_id,
                    "patient_ref": visit.patient_ref,
                    "date_of_service": visit.date_of_service,
                    "payer_id": visit.payer.payer_id,
                    "discipline": visit.discipline.value,
                    "line_ids": line_ids,
                    "cpt": f.cpt,
                    "message": f.message,
                    "expected": f.expected,
                    "observed": f.observed,
                    "reference": f.reference,
                    "detected_at": detected_at,
                    "engine_version": engine_version,
                    "amount_at_risk": money(f.amount_at_risk),
                    "ruleset_version": ruleset_version,
                },
            )
        )
    return out


def build_checked(
    visit: TherapyVisitCompleted,
    alerts: Sequence[AlertEvent],
    rules_evaluated: int,
    checked_at: datetime,
    engine_version: str,
    ruleset_version: str | None = None,
) -> CheckedEvent:
    status = VisitStatus.FLAGGED if alerts else VisitStatus.CLEAN
    return CheckedEvent(
        status,
        {
            "schema_version": 1,
            "visit_id": visit.visit_id,
            "event_id": visit.event_id,
            "patient_ref": visit.patient_ref,
            "date_of_service": visit.date_of_service,
            "status": status.value,
            "alert_ids": [a.alert_id for a in alerts],
            "rules_evaluated": rules_evaluated,
            "checked_at": checked_at,
            "engine_version": engine_version,
            "ruleset_version": ruleset_version,
        },
    )
