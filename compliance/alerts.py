"""Findings -> `ComplianceAlert` / `VisitChecked` events. Pure: the caller passes the time."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from compliance.findings import Finding
from schemas.alert import ComplianceAlert
from schemas.checked import VisitChecked
from schemas.common import VisitStatus
from schemas.visit import TherapyVisitCompleted

#: Fixed namespace so alert ids are the same in every process and release (uuid5 of it).
ALERT_NAMESPACE = uuid.UUID("5d0f3c8e-8a64-4a8e-9d1f-7c1b2a3e4f50")


def alert_id(event_id: str, rule_id: str, line_ids: Iterable[str]) -> str:
    """Deterministic: the same (event_id, rule_id, set of line_ids) always gives the same id, so a
    re-delivered event yields the same alerts and billing can de-duplicate (EVENTS.md).
    Fields are joined with a separator that cannot occur in them (opaque refs are printable
    ASCII), so ("a|b", "c") and ("a", "b|c") cannot collide."""
    key = "\x1f".join((event_id, rule_id, "\x1e".join(sorted(line_ids))))
    return str(uuid.uuid5(ALERT_NAMESPACE, key))


def build_alerts(
    visit: TherapyVisitCompleted,
    findings: Sequence[Finding],
    detected_at: datetime,
    engine_version: str,
) -> list[ComplianceAlert]:
    out = []
    for f in findings:
        line_ids = sorted(f.line_ids)
        # model_construct: every field comes from an already validated visit or from our own
        # rules (tests validate the output against the strict model), so skip re-validation.
        out.append(
            ComplianceAlert.model_construct(
                schema_version=1,
                alert_id=alert_id(visit.event_id, f.rule_id.value, line_ids),
                rule_id=f.rule_id.value,
                severity=f.severity,
                visit_id=visit.visit_id,
                event_id=visit.event_id,
                patient_ref=visit.patient_ref,
                date_of_service=visit.date_of_service,
                payer_id=visit.payer.payer_id,
                discipline=visit.discipline,
                line_ids=line_ids,
                cpt=f.cpt,
                message=f.message,
                expected=f.expected,
                observed=f.observed,
                reference=f.reference,
                detected_at=detected_at,
                engine_version=engine_version,
            )
        )
    return out


def build_checked(
    visit: TherapyVisitCompleted,
    alerts: Sequence[ComplianceAlert],
    rules_evaluated: int,
    checked_at: datetime,
    engine_version: str,
) -> VisitChecked:
    return VisitChecked.model_construct(
        schema_version=1,
        visit_id=visit.visit_id,
        event_id=visit.event_id,
        patient_ref=visit.patient_ref,
        date_of_service=visit.date_of_service,
        status=VisitStatus.FLAGGED if alerts else VisitStatus.CLEAN,
        alert_ids=[a.alert_id for a in alerts],
        rules_evaluated=rules_evaluated,
        checked_at=checked_at,
        engine_version=engine_version,
    )
