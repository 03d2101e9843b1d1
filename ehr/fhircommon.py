"""What the Claim/ChargeItem, Procedure and DocumentReference mappings share: the reading of one
bundle (its index, and the parts, rejections and warnings made, each naming its entry and
resource), the version of a part, the visit key a resource must name, what the visit's Encounter
says (discipline, date), the CPT/HCPCS code of a concept, and FHIR dates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource

from ehr.codes import fhir_procedure_code
from ehr.fhirindex import BundleIndex
from ehr.hl7time import fixed_offset, to_utc
from ehr.parts import ChargePart, DocumentationPart, PartVersion, VisitKey
from ehr.profile import EhrConfig
from ehr.rejection import EhrWarning, Problem, Rejection, RejectReason, WarnReason
from schemas.common import Discipline

Part = ChargePart | DocumentationPart


@dataclass
class BundleReading:
    index: BundleIndex
    received_at: datetime
    parts: list[Part] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    warnings: list[EhrWarning] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.warnings += self.index.warnings  # what reading the bundle itself found

    @property
    def config(self) -> EhrConfig:
        return self.index.config

    def reject(self, i: int, r: Resource, reason: RejectReason, detail: str) -> None:
        detail = f"{self._where(i, r)}: {detail}"
        self.rejections.append(Rejection.one(reason, detail, self.index.ref_of(r), entry=i))

    def warn(self, i: int, r: Resource, reason: WarnReason, detail: str) -> None:
        self.warnings.append(
            EhrWarning(
                reason=reason,
                detail=f"{self._where(i, r)}: {detail}",
                message_id=self.index.ref_of(r),
            )
        )

    def reject_all(self, i: int, r: Resource, problems: Sequence[Problem]) -> None:
        """One rejection listing every problem, each located at the entry."""
        where = self._where(i, r)
        located = [Problem(reason=p.reason, detail=f"{where}: {p.detail}") for p in problems]
        self.rejections.append(Rejection.of(located, self.index.ref_of(r), entry=i))

    def _where(self, i: int, r: Resource) -> str:
        # NDJSON: entries are numbered by their line in the file (parse_resources).
        word = f"line {i}" if self.index.by_line else f"entry[{i}]"
        return f"{word} {r.get_resource_type()}"

    def version(self, resources: Sequence[Resource]) -> PartVersion:
        """Newest meta.lastUpdated of the resources, else Bundle.timestamp, else received_at;
        control id = Bundle.id, else the resources' Type/id/_history/versionId."""
        zone = self.config.profile.zone
        times = [as_time(r.meta.lastUpdated, zone) for r in resources if r.meta is not None]
        known = [t for t in times if t is not None]
        # An ordering key, not a clinical time: UTC, like MSH-7's (ehr/hl7common.py).
        at = to_utc(max(known) if known else self.index.timestamp or self.received_at)
        ids: list[str] = []
        for r in resources:
            ref = self.index.ref_of(r)
            ids.append(f"{ref}/_history/{r.meta.versionId}" if r.meta and r.meta.versionId else ref)
        control = self.index.bundle_id or ",".join(sorted(ids))
        return PartVersion(at=at, control_id=control[:128])


def required_visit_key(
    index: BundleIndex,
    ref: Reference | None,
    owner: Resource,
    problems: list[Problem],
    where: str,
) -> VisitKey | None:
    """The visit key of the Encounter `ref` names (BundleIndex.visit_key), else a problem."""
    key = index.visit_key(ref, owner)
    if key is None:
        problems.append(
            Problem(
                reason=RejectReason.MISSING_FIELD,
                detail=f"{where} is absent or names no Encounter: the visit key is required",
            )
        )
    return key


def encounter_discipline(enc: Encounter | None, config: EhrConfig) -> Discipline | None:
    """The discipline the profile's [departments] gives the Encounter's serviceType."""
    for concept in (enc.serviceType,) if enc and enc.serviceType else ():
        for coding in concept.coding or []:
            found = config.profile.departments.get((coding.code or "").upper())
            if found is not None:
                return found
    return None


def encounter_date(enc: Encounter | None, zone: tzinfo) -> date | None:
    return as_date(enc.period.start, zone) if enc and enc.period else None


def cpt_of(concept: CodeableConcept | None) -> str | None:
    for coding in concept.coding or [] if concept else []:
        code = fhir_procedure_code(coding.code, coding.system)
        if code is not None:
            return code
    return None


def as_date(value: object, zone: tzinfo) -> date | None:
    """FHIR date/dateTime as parsed by fhir.resources (date, datetime, or a partial 'YYYY-MM'
    string) -> the clinic's calendar date, or None when partial. A `date` (FHIR R4: "There is no
    time zone") is the date as written; a dateTime/instant with a time is an instant, dated in
    the profile's zone (`2026-03-04T02:30:00Z` is 2026-03-03 in Chicago), as HL7 DTMs are
    (ehr/hl7time.py local_date)."""
    if isinstance(value, datetime):
        at = as_time(value, zone)
        assert at is not None
        return at.date()
    if isinstance(value, date):
        return value
    return None


def as_time(value: object, zone: tzinfo) -> datetime | None:
    """FHIR dateTime/instant -> an aware time in the clinic's zone (the profile's `timezone`):
    the offset as written when it is the clinic's own at that instant, else the same instant
    re-expressed on the clinic's clock (`2026-03-04T02:30:00Z` -> `2026-03-03T20:30:00-06:00`),
    never UTC, as for HL7 (ehr/hl7time.py). FHIR R4 dateTime (datatypes 2.24.0.1): "If hours and
    minutes are specified, a time zone SHALL be populated", and fhir.resources' dateTime/instant
    patterns refuse a time without one; a naive value (built in code) takes the profile's
    `timezone`. None for a date or a partial date, which name no time (a date-only value is a
    local date: `as_date`)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=zone)
        return fixed_offset(aware.astimezone(zone))
    return None
