"""What the Claim/ChargeItem, Procedure and DocumentReference mappings share: the parts and
rejections of one bundle (a rejection names the entry and the resource), the version of a part,
the CPT/HCPCS code of a concept, FHIR dates, and the visit key and Encounter of a reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource

from ehr import fhirindex as fx
from ehr.codes import fhir_procedure_code
from ehr.parts import ChargePart, DocumentationPart, PartVersion, VisitKey
from ehr.profile import EhrConfig
from ehr.rejection import Problem, Rejection, RejectReason
from schemas.common import Discipline

Part = ChargePart | DocumentationPart


@dataclass
class Context:
    index: fx.BundleIndex
    config: EhrConfig
    received_at: datetime
    parts: list[Part] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def where(self, i: int, r: Resource) -> str:
        return f"entry[{i}] {r.get_resource_type()}"

    def reject(self, i: int, r: Resource, reason: RejectReason, detail: str) -> None:
        self.rejections.append(
            Rejection.one(reason, f"{self.where(i, r)}: {detail}", self.ref_of(r))
        )

    def ref_of(self, r: Resource) -> str:
        if r.id:
            return f"{r.get_resource_type()}/{r.id}"
        return next((e.full_url for e in self.index.entries if e.resource is r and e.full_url), "?")

    def version(self, resources: Sequence[Resource]) -> PartVersion:
        """Newest meta.lastUpdated of the resources, else Bundle.timestamp, else received_at;
        control id = Bundle.id, else the resources' Type/id/_history/versionId."""
        times = [as_time(r.meta.lastUpdated) for r in resources if r.meta is not None]
        known = [t for t in times if t is not None]
        at = max(known) if known else self.index.timestamp or self.received_at
        ids = [
            f"{self.ref_of(r)}/_history/{r.meta.versionId}"
            if r.meta and r.meta.versionId
            else self.ref_of(r)
            for r in resources
        ]
        control = self.index.bundle_id or ",".join(sorted(ids))
        return PartVersion(at=at, control_id=control[:128])


def problem(reason: RejectReason, detail: str) -> Problem:
    return Problem(reason=reason, detail=detail)


def cpt_of(concept: CodeableConcept | None) -> str | None:
    for coding in concept.coding or [] if concept else []:
        code = fhir_procedure_code(coding.code, coding.system)
        if code is not None:
            return code
    return None


def encounter_key(
    ctx: Context, ref: Reference | None, owner: Resource, problems: list[Problem], where: str
) -> VisitKey | None:
    key = fx.visit_key(ctx.index, ref, ctx.config, owner)
    if key is None and ref is None:
        encounters = ctx.index.of_type(Encounter)
        if len(encounters) == 1:  # the bundle's only encounter
            key = _key_of(ctx, *encounters[0])
    if key is None:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD,
                f"{where} is absent or names no Encounter: the visit key is required",
            )
        )
    return key


def encounter_of(ctx: Context, key: VisitKey) -> Encounter | None:
    for i, enc in ctx.index.of_type(Encounter):
        if _key_of(ctx, i, enc) == key:
            return enc
    return None


def _key_of(ctx: Context, i: int, enc: Encounter) -> VisitKey | None:
    url = next((e.full_url for e in ctx.index.entries if e.index == i and e.full_url), "")
    ref = Reference(reference=url or f"Encounter/{enc.id}")
    return fx.visit_key(ctx.index, ref, ctx.config)


def encounter_discipline(ctx: Context, key: VisitKey) -> Discipline | None:
    enc = encounter_of(ctx, key)
    for concept in (enc.serviceType,) if enc and enc.serviceType else ():
        for coding in concept.coding or []:
            found = ctx.config.profile.departments.get((coding.code or "").upper())
            if found is not None:
                return found
    return None


def encounter_dates(ctx: Context, key: VisitKey) -> set[date]:
    enc = encounter_of(ctx, key)
    day = as_date(enc.period.start) if enc and enc.period else None
    return {day} if day else set()


def _aware(value: object) -> datetime | None:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    return None


def as_date(value: object) -> date | None:
    """FHIR date/dateTime as parsed by fhir.resources (date, datetime, or a partial 'YYYY-MM'
    string) -> the calendar date as written, or None when partial."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def as_time(value: object) -> datetime | None:
    return _aware(value)
