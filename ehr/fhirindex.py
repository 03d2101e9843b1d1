"""A FHIR R4B bundle's resources, indexed for reference resolution, with the lookups the mapping
needs: visit key of an encounter, patient_ref, practitioner NPI/credential, payer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource

from ehr.parts import VisitKey
from ehr.patient import hashed_visit_number, patient_ref
from ehr.profile import EhrConfig, PayerEntry

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
#: THO v2-0203 identifier type "MR" (medical record number).
_MR = "MR"
R = TypeVar("R", bound=Resource)


@dataclass
class Entry:
    index: int
    resource: Resource
    full_url: str = ""


@dataclass
class BundleIndex:
    entries: list[Entry]
    bundle_id: str = ""
    timestamp: datetime | None = None
    by_ref: dict[str, Resource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for e in self.entries:
            rid = getattr(e.resource, "id", None)
            if e.full_url:
                self.by_ref[e.full_url] = e.resource
            if rid:
                self.by_ref[f"{e.resource.get_resource_type()}/{rid}"] = e.resource

    def resolve(self, ref: Reference | None, owner: Resource | None = None) -> Resource | None:
        """A reference to a bundle entry (fullUrl or Type/id, also an absolute URL ending in
        Type/id) or to a resource contained in `owner` (#id)."""
        if ref is None or not ref.reference:
            return None
        text = ref.reference
        if text.startswith("#") and isinstance(owner, DomainResource):
            return next(
                (c for c in owner.contained or [] if getattr(c, "id", None) == text[1:]), None
            )
        if text in self.by_ref:
            return self.by_ref[text]
        tail = "/".join(text.rstrip("/").split("/")[-2:])
        return self.by_ref.get(tail)

    def of_type(self, cls: type[R]) -> list[tuple[int, R]]:
        return [(e.index, e.resource) for e in self.entries if isinstance(e.resource, cls)]


def visit_key(
    index: BundleIndex, ref: Reference | None, config: EhrConfig, owner: Resource | None = None
) -> VisitKey | None:
    """Encounter reference -> visit key: an identifier whose system is in the profile's
    [fhir.encounter_identifier_systems] (its facility + value), else the default facility + the
    Encounter's logical id (from the resource or the reference text), else its first
    identifier."""
    if ref is None or not ref.reference:
        return None
    settings = config.profile.fhir
    enc = index.resolve(ref, owner)
    facility, number = settings.default_facility, ""
    if isinstance(enc, Encounter):
        for ident in enc.identifier or []:
            if ident.system in settings.encounter_identifier_systems and ident.value:
                facility, number = settings.encounter_identifier_systems[ident.system], ident.value
                break
        # The logical id first (what a bare "Encounter/<id>" reference gives, so the key is the
        # same with or without the resource in the bundle); an id-less transaction entry: its
        # first identifier.
        first = next((i.value for i in enc.identifier or [] if i.value), "")
        number = number or enc.id or first
    elif ref.reference.split("/")[-2:-1] == ["Encounter"]:
        number = ref.reference.split("/")[-1]
    if not number or not number.isascii() or not number.isprintable() or len(number) > 120:
        return None
    if config.profile.visit_id == "hashed":
        number = hashed_visit_number(config.patient_key, facility, number)
    return VisitKey(facility=facility, visit_number=number)


def patient_of(
    index: BundleIndex, ref: Reference | None, config: EhrConfig, owner: Resource | None = None
) -> str | None:
    """patient_ref from the Patient's MR identifier (else its first identifier): value + system
    (mapped to the HL7 assigning authority by [patient_authority_aliases]). A Patient not in the
    bundle: its reference text, hashed the same way. None without a subject."""
    if ref is None or not (ref.reference or ref.identifier):
        return None
    patient = index.resolve(ref, owner)
    identifiers: list[Identifier] = []
    if isinstance(patient, Patient):
        identifiers = [i for i in patient.identifier or [] if i.value]
    elif ref.identifier is not None and ref.identifier.value:
        identifiers = [ref.identifier]
    if identifiers:
        mr = [i for i in identifiers if _is_mr(i)]
        ident = (mr or identifiers)[0]
        system = ident.system or ""
        authority = config.profile.patient_authority_aliases.get(system, system)
        return patient_ref(config.patient_key, ident.value or "", authority)
    if ref.reference:
        return patient_ref(config.patient_key, ref.reference, "fhir-reference")
    return None


def _is_mr(ident: Identifier) -> bool:
    return ident.type is not None and any(c.code == _MR for c in ident.type.coding or [])


def npi_of(index: BundleIndex, ref: Reference | None, owner: Resource | None = None) -> str | None:
    """Practitioner NPI: identifier with system us-npi, on the resource or in the reference
    (a conditional reference 'Practitioner?identifier=<us-npi>|<npi>', as Synthea writes)."""
    if ref is None:
        return None
    if ref.identifier is not None and ref.identifier.system == NPI_SYSTEM:
        return _npi(ref.identifier.value)
    text = ref.reference or ""
    marker = f"identifier={NPI_SYSTEM}|"
    if marker in text:
        return _npi(text.split(marker, 1)[1])
    prac = index.resolve(ref, owner)
    if isinstance(prac, Practitioner):
        for ident in prac.identifier or []:
            if ident.system == NPI_SYSTEM:
                return _npi(ident.value)
    return None


def _npi(value: str | None) -> str | None:
    return value if value is not None and len(value) == 10 and value.isdigit() else None


def credential_of(
    index: BundleIndex, ref: Reference | None, config: EhrConfig, owner: Resource | None = None
) -> Any:
    prac = index.resolve(ref, owner)
    if isinstance(prac, Practitioner):
        for qual in prac.qualification or []:
            for coding in qual.code.coding or [] if qual.code else []:
                cred = config.profile.credential(coding.code or "")
                if cred is not None:
                    return cred
    npi = npi_of(index, ref, owner)
    return config.profile.providers.get(npi) if npi else None


def payer_keys(index: BundleIndex, refs: Iterable[Reference | None]) -> list[str]:
    """Identifier values (then display) of the insurer organizations referenced, then of the
    first Coverage's payor: the keys looked up in the profile's [payers]."""
    keys: list[str] = []
    candidates = list(refs)
    for _, cov in index.of_type(Coverage):
        candidates += list(cov.payor or [])[:1]
        break
    for ref in candidates:
        if ref is None:
            continue
        if ref.identifier is not None and ref.identifier.value:
            keys.append(ref.identifier.value)
        org = index.resolve(ref)
        if isinstance(org, Organization):
            keys += [i.value for i in org.identifier or [] if i.value]
        if ref.display:
            keys.append(ref.display)
    return keys


def payer_entry(keys: list[str], config: EhrConfig) -> PayerEntry | None:
    for key in keys:
        entry = config.profile.payers.get(key) or config.profile.payers.get(key.upper())
        if entry is not None:
            return entry
    return config.profile.default_payer
