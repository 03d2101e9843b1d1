"""Evaluation (issue 13): a msgspec fast path for valid records, pydantic as the fallback.

    pip install --target /tmp/msgspec msgspec==0.22.0   # not a project dependency
    PYTHONPATH=/tmp/msgspec taskset -c 1 .venv/bin/python bench/msgspec_fastpath.py [--visits 30000]

msgspec is not a project dependency; this script measures what a fast path could save per
record before anyone adds one: msgspec decoding into Structs carrying the contract's
constraints (patterns, ranges, lengths, enums, aware datetimes), then the pydantic model the
rules read built with `model_construct` (no validation) and the model validators run by hand,
against `TherapyVisitCompleted.model_validate_json`. It is an upper bound for the gain: it does
not yet prove equality of the two parsers on every input (the differential fuzz test a kept
fast path needs) and skips what they would have to share (duplicate keys, patient_ref pattern,
rejection details: rejections go to pydantic anyway). Two ways to build the models are measured:
`model_construct` (the supported API) and setting `__dict__` directly (what model_construct
does, minus its per-field default handling); both are checked equal to pydantic's models on
the corpus first. Decision and figures: bench/RESULTS.md, "Performance (issue 13)".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
from msgspec import Meta, Struct

from schemas.common import Credential, Discipline, DocumentKind, PayerKind, UnitRule
from schemas.visit import Document, Payer, RenderingProvider, ServiceLine, TherapyVisitCompleted
from synthetic.visits import generator

Ref = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x20-\x7E]+$")]
Code = Annotated[str, Meta(pattern=r"^[0-9A-Z]{5}$")]
Mod = Annotated[str, Meta(pattern=r"^[0-9A-Z]{2}$")]
NpiT = Annotated[str, Meta(pattern=r"^[0-9]{10}$")]
Min = Annotated[int, Meta(ge=0, le=1440)]
UsdT = Annotated[str, Meta(pattern=r"^[0-9]{1,9}(\.[0-9]{1,4})?$")]
Aware = Annotated[datetime, Meta(tz=True)]


class MPayer(Struct):
    payer_id: Ref
    kind: PayerKind
    unit_rule: UnitRule | None = None


class MProvider(Struct):
    npi: NpiT
    credential: Credential


class MLine(Struct):
    line_id: Ref
    cpt: Code
    units: Annotated[int, Meta(ge=0, le=96)]
    minutes: Min | None = None
    modifiers: Annotated[list[Mod], Meta(max_length=4)] = []
    furnished_by: Credential | None = None
    assistant_minutes: Min | None = None
    allowed_amount: UsdT | None = None


class MDoc(Struct):
    doc_id: Ref
    kind: DocumentKind
    cpt: Code | None = None
    signed_at: Aware | None = None
    author_credential: Credential | None = None
    document_date: date | None = None
    plan_start: date | None = None
    plan_end: date | None = None
    sent_to_certifier_at: Aware | None = None
    verbal_order_at: Aware | None = None
    covers_from: date | None = None
    covers_through: date | None = None
    delay_reason_documented: bool | None = None
    discipline: Discipline | None = None


class MVisit(Struct):
    schema_version: Literal[1]
    event_id: Ref
    occurred_at: Aware
    visit_id: Ref
    patient_ref: Ref
    date_of_service: date
    discipline: Discipline
    payer: MPayer
    rendering_provider: MProvider
    services: Annotated[list[MLine], Meta(max_length=100)]
    total_timed_minutes: Min | None = None
    total_treatment_minutes: Min | None = None
    documents: Annotated[list[MDoc], Meta(max_length=100)] = []
    episode_ref: Ref | None = None
    episode_start_date: date | None = None
    parts_missing: (
        Annotated[list[Literal["charges", "documentation"]], Meta(min_length=1, max_length=2)]
        | None
    ) = None


_DECODER = msgspec.json.Decoder(MVisit)
_LINE_FIELDS = tuple(MLine.__struct_fields__)
_DOC_FIELDS = tuple(MDoc.__struct_fields__)


def fast(raw: bytes) -> TherapyVisitCompleted:
    m = _DECODER.decode(raw)
    services = []
    for s in m.services:
        ln = ServiceLine.model_construct(**{f: getattr(s, f) for f in _LINE_FIELDS})
        ln._assistant_within_line()
        services.append(ln)
    documents = []
    for d in m.documents:
        doc = Document.model_construct(**{f: getattr(d, f) for f in _DOC_FIELDS})
        doc._intervals_ordered()
        documents.append(doc)
    visit = TherapyVisitCompleted.model_construct(
        schema_version=1,
        event_id=m.event_id,
        occurred_at=m.occurred_at,
        visit_id=m.visit_id,
        patient_ref=m.patient_ref,
        date_of_service=m.date_of_service,
        discipline=m.discipline,
        payer=Payer.model_construct(
            payer_id=m.payer.payer_id, kind=m.payer.kind, unit_rule=m.payer.unit_rule
        ),
        rendering_provider=RenderingProvider.model_construct(
            npi=m.rendering_provider.npi, credential=m.rendering_provider.credential
        ),
        services=services,
        total_timed_minutes=m.total_timed_minutes,
        total_treatment_minutes=m.total_treatment_minutes,
        documents=documents,
        episode_ref=m.episode_ref,
        episode_start_date=m.episode_start_date,
        parts_missing=m.parts_missing,
    )
    visit._consistent()
    return visit


def _raw_model(cls: Any, values: dict[str, Any], fields_set: set[str]) -> Any:
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", fields_set)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def fast_raw(raw: bytes) -> TherapyVisitCompleted:
    """model_construct's work without its per-field default handling (the Struct has already
    applied the defaults)."""
    m = _DECODER.decode(raw)
    services = [_raw_model(ServiceLine, msgspec.structs.asdict(s), set()) for s in m.services]
    documents = [_raw_model(Document, msgspec.structs.asdict(d), set()) for d in m.documents]
    values = msgspec.structs.asdict(m)
    values["payer"] = _raw_model(Payer, msgspec.structs.asdict(m.payer), set())
    values["rendering_provider"] = _raw_model(
        RenderingProvider, msgspec.structs.asdict(m.rendering_provider), set()
    )
    values["services"] = services
    values["documents"] = documents
    visit = _raw_model(TherapyVisitCompleted, values, set())
    for ln in services:
        ln._assistant_within_line()
    for d in documents:
        d._intervals_ordered()
    visit._consistent()
    return visit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    records = [
        r.value
        for mode in ("visits", "episodes")
        for r in generator(mode, seed=42, malformed_share=0.0).records(args.visits // 2)
    ]
    for fn in (fast, fast_raw):
        same = sum(
            fn(r).model_dump() == TherapyVisitCompleted.model_validate_json(r).model_dump()
            for r in records
        )
        assert same == len(records), f"{fn.__name__}: {len(records) - same} models differ"
    print(f"records: {len(records)} valid (visits + episodes feeds); models equal to pydantic's")
    variants = {
        "pydantic model_validate_json": TherapyVisitCompleted.model_validate_json,
        "msgspec decode only (Structs)": _DECODER.decode,
        "msgspec + model_construct": fast,
        "msgspec + __dict__ models": fast_raw,
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, fn in variants.items():
            start = time.perf_counter()
            for r in records:
                fn(r)
            results[name].append((time.perf_counter() - start) / len(records) * 1e6)
    for name, times in results.items():
        print(f"{name:30s} median {statistics.median(times):6.2f} us/record ({args.repeat} runs)")


if __name__ == "__main__":
    main()
