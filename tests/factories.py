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


# --- episodes of care (EVENTS.md "v1 additions") ----------------------------------------------

MODIFIER = {"PT": "GP", "OT": "GO", "SLP": "GN"}
EVALUATION = {"PT": "97161", "OT": "97165", "SLP": "92523"}
RE_EVALUATION = {"PT": "97164", "OT": "97168"}
TREATMENT = {"PT": "97110", "OT": "97530", "SLP": "92507"}


def doc(kind: str, doc_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """An episode document; `signed` (a date "YYYY-MM-DD", or None for unsigned) becomes
    `signed_at` at noon UTC; `author` the author_credential (default PT); other fields as given
    (dates as "YYYY-MM-DD"; `sent`/`verbal` become sent_to_certifier_at / verbal_order_at)."""
    signed = fields.pop("signed", "__dos__")
    out: dict[str, Any] = {"doc_id": doc_id or f"D-{kind}", "kind": kind}
    author = fields.pop("author", "PT")
    if author is not None:
        out["author_credential"] = author
    if signed is not None:
        out["signed_at"] = signed  # resolved by episode_visit when "__dos__"
    for short, name in (("sent", "sent_to_certifier_at"), ("verbal", "verbal_order_at")):
        if short in fields:
            out[name] = f"{fields.pop(short)}T12:00:00Z"
    out.update(fields)
    return out


def episode_visit(
    visit_id: str,
    dos: str,
    *,
    discipline: str = "PT",
    kind: str = "medicare",
    evaluation: bool = False,
    re_evaluation: bool = False,
    services: list[dict[str, Any]] | None = None,
    docs: list[dict[str, Any]] | None = None,
    amount: str | None = "100.00",
    kx: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """A billed visit of the BASE patient (correct units and totals): an initial evaluation,
    a re-evaluation, or one treatment line, with `amount` as its allowed_amount."""
    mod = [MODIFIER[discipline], *(["KX"] if kx else [])]
    if services is None:
        if evaluation:
            services = [line("1", EVALUATION[discipline], 1, None, mod)]
        elif re_evaluation:
            services = [line("1", RE_EVALUATION[discipline], 1, None, mod)]
        elif discipline == "SLP":
            services = [line("1", TREATMENT["SLP"], 1, None, mod)]
        else:
            services = [line("1", TREATMENT[discipline], 1, 15, mod)]
        if amount is not None:
            services[0]["allowed_amount"] = amount
    documents = []
    for i, d in enumerate(docs or []):
        d = dict(d)
        d.setdefault("doc_id", f"D-{visit_id}-{i}")
        if d.get("signed_at") == "__dos__":
            d["signed_at"] = f"{dos}T18:00:00Z"
        elif isinstance(d.get("signed_at"), str) and len(d["signed_at"]) == 10:
            d["signed_at"] = f"{d['signed_at']}T18:00:00Z"
        documents.append(d)
    timed = sum(s.get("minutes", 0) for s in services)
    fields: dict[str, Any] = {
        "visit_id": visit_id,
        "event_id": f"evt-{visit_id}",
        "date_of_service": dos,
        "occurred_at": f"{dos}T20:00:00Z",
        "discipline": discipline,
        "payer": {"payer_id": f"P-{kind.upper()}", "kind": kind},
        "rendering_provider": {"npi": "1234567893", "credential": discipline},
        "services": services,
        "total_timed_minutes": timed,
        "total_treatment_minutes": timed + 30,
        "documents": documents,
    }
    return payload(**{**fields, **overrides})
