"""Builders for TherapyVisitCompleted v1 payloads used across the tests."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from schemas.visit import TherapyVisitCompleted

BASE: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "0b6f3f4e-3a55-4f7b-9a52-0d7f3c1d2e10",
    "occurred_at": "2026-03-02T15:04:05Z",
    "visit_id": "V-1001",
    "patient_ref": "P-88f1",
    "date_of_service": "2026-03-02",
    "discipline": "PT",
    "payer": {"payer_id": "MEDICARE-B", "kind": "medicare"},
    "rendering_provider": {"npi": "1234567893", "credential": "PT"},
    "services": [],
    "total_timed_minutes": 0,
    "total_treatment_minutes": 0,
    "documents": [],
}


def line(
    line_id: str,
    cpt: str,
    units: int,
    minutes: int | None = None,
    modifiers: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "line_id": line_id,
        "cpt": cpt,
        "units": units,
        "modifiers": ["GP"] if modifiers is None else modifiers,
    }
    if minutes is not None:
        out["minutes"] = minutes
    out.update(extra)
    return out


def timed_visit(
    *lines: tuple[str, int, int | None],
    kind: str = "medicare",
    extra_treatment: int = 5,
    **overrides: Any,
) -> dict[str, Any]:
    """A visit of timed lines given as (cpt, units, minutes); totals consistent by default."""
    services = [
        line(str(i + 1), cpt, units, minutes) for i, (cpt, units, minutes) in enumerate(lines)
    ]
    total = sum(m or 0 for _, _, m in lines)
    return payload(
        services=services,
        total_timed_minutes=total,
        total_treatment_minutes=total + extra_treatment,
        payer={"payer_id": "P-" + kind.upper(), "kind": kind},
        **overrides,
    )


def payload(**overrides: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def model(data: dict[str, Any]) -> TherapyVisitCompleted:
    return TherapyVisitCompleted.model_validate_json(orjson.dumps(data))


def raw(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


def other_visit(
    visit_id: str,
    services: list[dict[str, Any]],
    npi: str = "1234567893",
    dos: str = "2026-03-02",
    **overrides: Any,
) -> dict[str, Any]:
    """A visit of the BASE patient with its own ids (for same-day, cross-visit tests)."""
    timed = sum(s.get("minutes", 0) for s in services)
    fields: dict[str, Any] = {
        "visit_id": visit_id,
        "event_id": f"evt-{visit_id}",
        "date_of_service": dos,
        "occurred_at": f"{dos}T20:00:00Z",
        "rendering_provider": {"npi": npi, "credential": "PT"},
        "services": services,
        "total_timed_minutes": timed,
        "total_treatment_minutes": timed + 30,
    }
    return payload(**{**fields, **overrides})
