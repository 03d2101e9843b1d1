"""FHIR R4B (fhir.resources.R4B) -> ChargePart / DocumentationPart, one per encounter and source.

Mapping (ehr_ncci.md 4, docs/integration-hl7.md "FHIR"), one module per resource kind:
- Claim (use = claim) items, or ChargeItems -> charges (ehr/fhircharges.py).
- Procedure (status completed) -> minutes by CPT code (ehr/fhirprocedures.py).
- DocumentReference -> a document (ehr/fhirdocuments.py).
- ExplanationOfBenefit, a Claim with use preauthorization/predetermination: not a visit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit
from fhir.resources.R4B.procedure import Procedure

from ehr import fhirindex as fx
from ehr.fhircharges import charges_from_charge_items, charges_from_claim
from ehr.fhircommon import Context, Part
from ehr.fhirdocuments import documentation_from_document
from ehr.fhirprocedures import documentation_from_procedures
from ehr.profile import EhrConfig
from ehr.rejection import Rejection, RejectReason


@dataclass(frozen=True)
class FhirResult:
    parts: tuple[Part, ...] = ()
    rejections: tuple[Rejection, ...] = ()


def parse_fhir(
    data: bytes | str | Mapping[str, Any] | object, config: EhrConfig, received_at: datetime
) -> FhirResult:
    """A transaction/collection Bundle (or one bare resource) -> parts and rejections. Never
    raises for bad input. `received_at` versions resources that carry neither meta.lastUpdated
    nor a Bundle.timestamp."""
    index = fx.load(data)
    if isinstance(index, Rejection):
        return FhirResult(rejections=(index,))
    return parse_index(index, config, received_at)


def parse_resources(
    resources: Sequence[Mapping[str, Any]], config: EhrConfig, received_at: datetime
) -> FhirResult:
    """Bare resources read together as one collection (an NDJSON bulk export)."""
    entries: list[fx.Entry] = []
    rejections: list[Rejection] = []
    for i, obj in enumerate(resources, start=1):
        resource = fx.validate(obj)
        if isinstance(resource, Rejection):
            rejections.append(_located(resource, f"line {i}"))
        else:
            entries.append(fx.Entry(i, resource))
    result = parse_index(fx.BundleIndex(entries), config, received_at)
    return FhirResult(result.parts, (*rejections, *result.rejections))


def _located(rej: Rejection, where: str) -> Rejection:
    return Rejection.one(rej.reason, f"{where}: {rej.detail}", rej.message_id)


def parse_index(index: fx.BundleIndex, config: EhrConfig, received_at: datetime) -> FhirResult:
    ctx = Context(index, config, received_at)
    for i, eob in index.of_type(ExplanationOfBenefit):
        ctx.reject(
            i,
            eob,
            RejectReason.NOT_A_VISIT,
            "an ExplanationOfBenefit is a payer's adjudication, not a rendered visit",
        )
    for i, claim in index.of_type(Claim):
        charges_from_claim(ctx, i, claim)
    items = index.of_type(ChargeItem)
    if items:
        charges_from_charge_items(ctx, items)
    procedures = index.of_type(Procedure)
    if procedures:
        documentation_from_procedures(ctx, procedures)
    for i, doc in index.of_type(DocumentReference):
        documentation_from_document(ctx, i, doc)
    if not ctx.parts and not ctx.rejections:
        ctx.rejections.append(
            Rejection.one(
                RejectReason.NOT_A_VISIT,
                "no Claim, ChargeItem, Procedure or DocumentReference to read",
                index.bundle_id or None,
            )
        )
    return FhirResult(tuple(ctx.parts), tuple(ctx.rejections))
