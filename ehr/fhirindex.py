"""One FHIR R4B bundle's resources by type and by reference, and the look-ups the mappings ask of
them: the visit key of an Encounter reference, the Encounter of a visit key, patient_ref, a
Practitioner's NPI and credential, the payer's keys. No mapping here: each answer is a typed
value, worked out in this one place, and the Encounters' keys once per bundle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TypeVar

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
from ehr.profile import EhrConfig
from ehr.rejection import EhrWarning
from schemas.common import Credential

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
#: THO v2-0203 identifier type "MR" (medical record number).
_MR = "MR"
R = TypeVar("R", bound=Resource)


@dataclass
class Entry:
    index: int
    resource: Resource
    full_url: str = ""


@dataclass(frozen=True)
class Clinician:
    """What a reference to a Practitioner says about who rendered or wrote something."""

    npi: str | None
    credential: Credential | None


class BundleIndex:
    def __init__(
        self,
        entries: list[Entry],
        config: EhrConfig,
        bundle_id: str = "",
        timestamp: datetime | None = None,
        warnings: Sequence[EhrWarning] = (),
        *,
        by_line: bool = False,
    ) -> None:
        self.entries = entries
        #: Entries are numbered by their NDJSON line (bare resources), not their bundle position.
        self.by_line = by_line
        self.config = config
        self.bundle_id = bundle_id
        self.timestamp = timestamp
        #: What reading the bundle found that is no entry's (a searchset's outcome, its paging).
        self.warnings = list(warnings)
        self.by_ref: dict[str, Resource] = {}
        for e in entries:
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

    def ref_of(self, r: Resource) -> str:
        """How a rejection names a resource: Type/id, else its entry's fullUrl, else '?'."""
        if r.id:
            return f"{r.get_resource_type()}/{r.id}"
        return next((e.full_url for e in self.entries if e.resource is r and e.full_url), "?")

    # ---- visits ----------------------------------------------------------------------------

    def visit_key(self, ref: Reference | None, owner: Resource | None = None) -> VisitKey | None:
        """Encounter reference -> visit key (`_key_of_reference`). No reference at all: the key of
        the bundle's only Encounter, if it has exactly one."""
        if ref is None:
            return self._only_encounter_key
        return self._key_of_reference(ref, owner)

    def encounter(self, key: VisitKey) -> Encounter | None:
        """The bundle's (first) Encounter whose visit key is `key`."""
        return self._encounters.get(key)

    @cached_property
    def _encounters(self) -> dict[VisitKey, Encounter]:
        found: dict[VisitKey, Encounter] = {}
        for e in self.entries:
            if isinstance(e.resource, Encounter):
                key = self._key_of_entry(e)
                if key is not None:
                    found.setdefault(key, e.resource)
        return found

    @cached_property
    def _only_encounter_key(self) -> VisitKey | None:
        encounters = [e for e in self.entries if isinstance(e.resource, Encounter)]
        return self._key_of_entry(encounters[0]) if len(encounters) == 1 else None

    def _key_of_entry(self, e: Entry) -> VisitKey | None:
        # Named as a reference to it names it, so it gets the key its referrers get.
        return self._key_of_reference(
            Reference(reference=e.full_url or f"Encounter/{e.resource.id}")
        )

    def _key_of_reference(self, ref: Reference, owner: Resource | None = None) -> VisitKey | None:
        """An identifier whose system is in the profile's [fhir.encounter_identifier_systems]
        (its facility + value), else the default facility + the Encounter's logical id (from
        the resource or the reference text), else its first identifier."""
        if not ref.reference:
            return None
        settings = self.config.profile.fhir
        enc = self.resolve(ref, owner)
        facility, number = settings.default_facility, ""
        if isinstance(enc, Encounter):
            for ident in enc.identifier or []:
                if ident.system in settings.encounter_identifier_systems and ident.value:
                    facility = settings.encounter_identifier_systems[ident.system]
                    number = ident.value
                    break
            # The logical id first (what a bare "Encounter/<id>" reference gives, so the key is
            # the same with or without the resource in the bundle); an id-less transaction
            # entry: its first identifier.
            first = next((i.value for i in enc.identifier or [] if i.value), "")
            number = number or enc.id or first
        elif ref.reference.split("/")[-2:-1] == ["Encounter"]:
            number = ref.reference.split("/")[-1]
        if not number or not number.isascii() or not number.isprintable() or len(number) > 120:
            return None
        if self.config.profile.visit_id == "hashed":
            number = hashed_visit_number(self.config.patient_key, facility, number)
        return VisitKey(facility=facility, visit_number=number)

    # ---- people ----------------------------------------------------------------------------

    def patient_ref(self, ref: Reference | None, owner: Resource | None = None) -> str | None:
        """patient_ref from the Patient's MR identifier (else its first identifier): value +
        system (mapped to the HL7 assigning authority by [patient_authority_aliases]). A Patient
        not in the bundle: its reference text, hashed the same way. None without a subject."""
        if ref is None or not (ref.reference or ref.identifier):
            return None
        patient = self.resolve(ref, owner)
        identifiers: list[Identifier] = []
        if isinstance(patient, Patient):
            identifiers = [i for i in patient.identifier or [] if i.value]
        elif ref.identifier is not None and ref.identifier.value:
            identifiers = [ref.identifier]
        key = self.config.patient_key
        if identifiers:
            mr = [i for i in identifiers if _is_mr(i)]
            ident = (mr or identifiers)[0]
            system = ident.system or ""
            authority = self.config.profile.patient_authority_aliases.get(system, system)
            return patient_ref(key, ident.value or "", authority)
        if ref.reference:
            return patient_ref(key, ref.reference, "fhir-reference")
        return None

    def clinician(self, ref: Reference | None, owner: Resource | None = None) -> Clinician:
        """NPI: an identifier with system us-npi, on the Practitioner or in the reference (a
        conditional reference 'Practitioner?identifier=<us-npi>|<npi>', as Synthea writes).
        Credential: the Practitioner's qualification, else the profile's [providers] by NPI."""
        npi = self._npi(ref, owner)
        prac = self.resolve(ref, owner)
        if isinstance(prac, Practitioner):
            for qual in prac.qualification or []:
                for coding in qual.code.coding or [] if qual.code else []:
                    cred = self.config.profile.credential(coding.code or "")
                    if cred is not None:
                        return Clinician(npi, cred)
        return Clinician(npi, self.config.profile.providers.get(npi) if npi else None)

    def _npi(self, ref: Reference | None, owner: Resource | None) -> str | None:
        if ref is None:
            return None
        if ref.identifier is not None and ref.identifier.system == NPI_SYSTEM:
            return _npi(ref.identifier.value)
        text = ref.reference or ""
        marker = f"identifier={NPI_SYSTEM}|"
        if marker in text:
            return _npi(text.split(marker, 1)[1])
        prac = self.resolve(ref, owner)
        if isinstance(prac, Practitioner):
            for ident in prac.identifier or []:
                if ident.system == NPI_SYSTEM:
                    return _npi(ident.value)
        return None

    # ---- payer -----------------------------------------------------------------------------

    def payer_keys(self, refs: Iterable[Reference | None]) -> list[str]:
        """Identifier values (then display) of the insurer organizations referenced, then of the
        first Coverage's payor: the keys looked up in the profile's [payers]."""
        keys: list[str] = []
        candidates = list(refs)
        for _, cov in self.of_type(Coverage):
            candidates += list(cov.payor or [])[:1]
            break
        for ref in candidates:
            if ref is None:
                continue
            if ref.identifier is not None and ref.identifier.value:
                keys.append(ref.identifier.value)
            org = self.resolve(ref)
            if isinstance(org, Organization):
                keys += [i.value for i in org.identifier or [] if i.value]
            if ref.display:
                keys.append(ref.display)
        return keys


def _is_mr(ident: Identifier) -> bool:
    return ident.type is not None and any(c.code == _MR for c in ident.type.coding or [])


def _npi(value: str | None) -> str | None:
    return value if value is not None and len(value) == 10 and value.isdigit() else None
