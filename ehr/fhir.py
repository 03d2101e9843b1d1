"""FHIR R4B (fhir.resources.R4B) -> ChargePart / DocumentationPart, one per encounter and source.

Here: the JSON read and validated, the bundle indexed (ehr/fhirindex.py: resources by type and
reference, and the look-ups the mappings ask), and each resource kind handed to its module, which
maps it from resource to part (ehr_ncci.md 4, docs/integration-hl7.md "FHIR"):
- Claim (use = claim) items, or ChargeItems -> charges (ehr/fhircharges.py).
- Procedure (status completed) -> minutes by CPT code (ehr/fhirprocedures.py).
- DocumentReference -> a document (ehr/fhirdocuments.py).
- ExplanationOfBenefit, a Claim with use preauthorization/predetermination: not a visit.
A searchset (a REST search's answer) is read like a collection: its match and include entries
(ehr/fhirsearch.py).
What the three modules share (the bundle's parts and rejections, a part's version, dates, CPT)
is ehr/fhircommon.py.

Validation uses fhir.resources 8.3 `fhir.resources.R4B` (pydantic v2 models; ehr_ncci.md 4).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from ehr.fhircharges import charges_from_charge_items, charges_from_claim
from ehr.fhircommon import BundleReading, Part, as_time
from ehr.fhirdocuments import documentation_from_document
from ehr.fhirindex import BundleIndex, Entry
from ehr.fhirprocedures import documentation_from_procedures
from ehr.fhirsearch import search_entries
from ehr.profile import EhrConfig
from ehr.rejection import EhrWarning, Rejection, RejectReason
from schemas.decode import UTF8_BOM
from schemas.duplicate_keys import duplicate_key_detail

#: FHIR R4 Bundle.type (BundleType): a searchset is a search's answer (ehr/fhirsearch.py).
ACCEPTED_BUNDLE_TYPES = ("transaction", "collection", "searchset")


@dataclass(frozen=True)
class FhirResult:
    parts: tuple[Part, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    #: Read on without a part: counted and logged by the caller (ehr/rejection.py WarnReason).
    warnings: tuple[EhrWarning, ...] = ()


def parse_fhir(
    data: bytes | str | Mapping[str, Any] | object, config: EhrConfig, received_at: datetime
) -> FhirResult:
    """A transaction/collection/searchset Bundle (or one bare resource) -> parts, rejections and
    warnings. Never raises for bad input. `received_at` versions resources that carry neither
    meta.lastUpdated nor a Bundle.timestamp."""
    index = load(data, config)
    if isinstance(index, Rejection):
        return FhirResult(rejections=(index,))
    return parse_index(index, received_at)


def parse_resources(
    resources: Sequence[Mapping[str, Any]],
    config: EhrConfig,
    received_at: datetime,
    lines: Sequence[int] | None = None,
) -> FhirResult:
    """Bare resources read together as one collection (an NDJSON bulk export). `lines`: each
    resource's 1-based line in its file (default 1..n); a rejection names it (`entry`)."""
    numbers = list(lines) if lines is not None else list(range(1, len(resources) + 1))
    entries: list[Entry] = []
    rejections: list[Rejection] = []
    for line, obj in zip(numbers, resources, strict=True):
        resource = validate(obj)
        if isinstance(resource, Rejection):
            rejections.append(_located(resource, line))
        else:
            entries.append(Entry(line, resource))
    result = parse_index(BundleIndex(entries, config, by_line=True), received_at)
    return FhirResult(result.parts, (*rejections, *result.rejections), result.warnings)


def _located(rej: Rejection, line: int) -> Rejection:
    return Rejection.one(rej.reason, f"line {line}: {rej.detail}", rej.message_id, entry=line)


def parse_index(index: BundleIndex, received_at: datetime) -> FhirResult:
    """Each resource kind to its module, in the order the result lists their rejections and
    parts."""
    reading = BundleReading(index, received_at)
    for i, eob in index.of_type(ExplanationOfBenefit):
        reading.reject(
            i,
            eob,
            RejectReason.NOT_A_VISIT,
            "an ExplanationOfBenefit is a payer's adjudication, not a rendered visit",
        )
    for i, claim in index.of_type(Claim):
        charges_from_claim(reading, i, claim)
    items = index.of_type(ChargeItem)
    if items:
        charges_from_charge_items(reading, items)
    procedures = index.of_type(Procedure)
    if procedures:
        documentation_from_procedures(reading, procedures)
    for i, doc in index.of_type(DocumentReference):
        documentation_from_document(reading, i, doc)
    if not reading.parts and not reading.rejections and not reading.warnings:
        reading.rejections.append(
            Rejection.one(
                RejectReason.NOT_A_VISIT,
                "no Claim, ChargeItem, Procedure or DocumentReference to read",
                index.bundle_id or None,
            )
        )
    return FhirResult(tuple(reading.parts), tuple(reading.rejections), tuple(reading.warnings))


def load(
    data: bytes | str | Mapping[str, Any] | object, config: EhrConfig
) -> BundleIndex | Rejection:
    """JSON -> validated R4B resources. A transaction, collection or searchset Bundle; a bare
    resource is read as a collection of one (the convert command's files)."""
    try:
        # Bytes starting with a UTF-8 byte-order mark are accepted on purpose: json.loads
        # detects the encoding of bytes and skips the BOM, which RFC 8259 sec. 8.1 allows a
        # parser to do "in the interests of interoperability", and FHIR producers on Windows
        # write one (docs/rules.md "Input hygiene": a visit record's BOM is refused instead).
        # Duplicate keys are refused below (`duplicate_keys`), on the text, which still has them.
        obj = json.loads(data) if isinstance(data, bytes | str) else data
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejection.one(RejectReason.NOT_FHIR, f"not valid JSON ({type(exc).__name__})")
    if isinstance(data, bytes | str):
        duplicate = duplicate_keys(data)
        if duplicate is not None:
            return duplicate
    if not isinstance(obj, Mapping) or not isinstance(obj.get("resourceType"), str):
        return Rejection.one(RejectReason.NOT_FHIR, "not a FHIR resource: no resourceType")
    if obj["resourceType"] != "Bundle":
        resource = validate(obj)
        if isinstance(resource, Rejection):
            return resource
        return BundleIndex([Entry(1, resource)], config)
    if obj.get("type") not in ACCEPTED_BUNDLE_TYPES:
        return Rejection.one(
            RejectReason.UNSUPPORTED_TYPE,
            f"Bundle.type {str(obj.get('type'))[:20]!r} is not transaction, collection or "
            "searchset",
        )
    try:
        bundle = Bundle.model_validate(dict(obj))
    except ValidationError as exc:
        return _invalid(exc)
    warnings: list[EhrWarning] = []
    if bundle.type == "searchset":
        found = search_entries(bundle)
        if isinstance(found, Rejection):
            return found
        entries, warnings = found
    else:
        entries = [
            Entry(i, e.resource, e.fullUrl or "")
            for i, e in enumerate(bundle.entry or [], start=1)
            if e.resource is not None
        ]
    stamp = as_time(bundle.timestamp, config.profile.zone)
    return BundleIndex(entries, config, bundle.id or "", stamp, warnings)


def duplicate_keys(data: bytes | str) -> Rejection | None:
    """`not_fhir` naming the path of the first key an object of the JSON text names twice
    (`entry.0.resource.birthDate`), else None. `data` is a text `json.loads` accepted.

    RFC 8259 sec. 4: with duplicate names "the behavior of software that receives such an
    object is unpredictable" (Python's json keeps the last value, other parsers the first), so a
    bundle two systems would read differently is refused, as a visit record is
    (docs/rules.md "Input hygiene"). Keys are named, values never (they may be patient data).
    A mapping handed in already parsed cannot be checked: its duplicates are gone."""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    detail = duplicate_key_detail(raw.removeprefix(UTF8_BOM))
    return None if detail is None else Rejection.one(RejectReason.NOT_FHIR, detail)


def validate(obj: Mapping[str, Any]) -> Resource | Rejection:
    try:
        cls = get_fhir_model_class(str(obj["resourceType"]))
    except (KeyError, ValueError):
        return Rejection.one(
            RejectReason.NOT_FHIR, f"unknown resourceType {str(obj.get('resourceType'))[:40]!r}"
        )
    try:
        resource = cls.model_validate(obj)
    except ValidationError as exc:
        return _invalid(exc)
    assert isinstance(resource, Resource)
    return resource


def _invalid(exc: ValidationError) -> Rejection:
    # Element paths and messages only: the input values may be patient data.
    errs = exc.errors(include_url=False, include_input=False)
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errs[:3])
    return Rejection.one(RejectReason.NOT_FHIR, f"not valid FHIR R4B: {where}")
