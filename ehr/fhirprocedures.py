"""Procedure (status completed) with a CPT/HCPCS coding -> minutes for that code: the minutes
extension, else the length of performedPeriod. Procedures of one encounter form one part
(ehr_ncci.md 4, docs/integration-hl7.md "FHIR"). Only therapy codes (EhrConfig.is_therapy_code)
document a therapy visit; a completed Procedure with any other code is a warning, not a part.
"""

from __future__ import annotations

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from ehr.codes import FHIR_CPT
from ehr.fhircharges import billed_as_therapy
from ehr.fhircommon import (
    BundleReading,
    as_date,
    as_time,
    cpt_of,
    encounter_date,
    encounter_discipline,
    required_visit_key,
)
from ehr.parts import DocumentationPart, VisitKey
from ehr.profile import EhrConfig
from ehr.rejection import Problem, RejectReason, WarnReason


def procedure_minutes(proc: Procedure, config: EhrConfig) -> int | None:
    """The minutes extension (valueInteger, or valueQuantity in min), else the whole minutes of
    performedPeriod (end - start). None when neither is there."""
    url = config.profile.fhir.minutes_extension
    for ext in proc.extension or []:
        if ext.url == url:
            if ext.valueInteger is not None:
                return int(ext.valueInteger)
            if ext.valueQuantity is not None and ext.valueQuantity.value is not None:
                return int(ext.valueQuantity.value)
    period = proc.performedPeriod
    zone = config.profile.zone
    start = as_time(period.start, zone) if period else None
    end = as_time(period.end, zone) if period else None
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() // 60)


def documentation_from_procedures(
    reading: BundleReading, procs: list[tuple[int, Procedure]]
) -> None:
    groups: dict[str, tuple[VisitKey, list[tuple[int, Procedure, str, int | None]]]] = {}
    therapy_billed: set[tuple[VisitKey, str]] | None = None  # read once, when first needed
    for i, proc in procs:
        if proc.status != "completed":
            reading.reject(i, proc, RejectReason.NOT_A_VISIT, f"Procedure.status is {proc.status}")
            continue
        cpt = cpt_of(proc.code)
        if cpt is None:
            reading.reject(
                i,
                proc,
                RejectReason.NO_PROCEDURE_CODE,
                f"Procedure.code has no CPT ({FHIR_CPT}) or HCPCS coding; {_systems(proc.code)}",
            )
            continue
        problems: list[Problem] = []
        where = "Procedure.encounter"
        key = required_visit_key(reading.index, proc.encounter, proc, problems, where)
        if key is None:
            reading.reject(i, proc, problems[0].reason, problems[0].detail)
            continue
        therapy = reading.config.is_therapy_code(cpt)
        if not therapy:
            if therapy_billed is None:
                therapy_billed = billed_as_therapy(reading.index)
            therapy = (key, cpt) in therapy_billed
        if not therapy:
            # A code the catalog lacks counts when the bundle bills it on this visit with GP/GO/GN
            # (ehr/fhircharges.py billed_as_therapy, Pub. 100-04 Ch. 5 sec. 20.1).
            # Not therapy documentation (a defibrillator implant, 33249, on the encounter of a
            # PT Claim): neither minutes nor a 0-unit line, and it does not make the visit's
            # documentation "received" (docs/integration-hl7.md "FHIR R4B"). The code alone is
            # named: a CPT code identifies no one.
            reading.warn(
                i,
                proc,
                WarnReason.NOT_THERAPY_PROCEDURE,
                f"Procedure.code {cpt} is not a therapy code (the catalog, the profile's "
                "[fhir] therapy_procedure_codes, or billed on this visit with GP/GO/GN in the "
                "same bundle): not documentation of the visit",
            )
            continue
        minutes = procedure_minutes(proc, reading.config)
        if minutes is not None and not 0 <= minutes <= 1440:
            reading.reject(
                i, proc, RejectReason.BAD_VALUE, "the procedure's minutes are not 0-1440"
            )
            continue
        groups.setdefault(key.text, (key, []))[1].append((i, proc, cpt, minutes))
    for key, members in groups.values():
        _procedure_part(reading, key, members)


def _systems(concept: CodeableConcept | None) -> str:
    systems = sorted({c.system or "(no system)" for c in (concept.coding or [] if concept else [])})
    return "codings: " + (", ".join(systems) if systems else "none")


def _procedure_part(
    reading: BundleReading, key: VisitKey, members: list[tuple[int, Procedure, str, int | None]]
) -> None:
    index = reading.index
    i, first = members[0][0], members[0][1]
    patient = index.patient_ref(first.subject, first)
    if patient is None:
        reading.reject(i, first, RejectReason.MISSING_FIELD, "Procedure.subject is absent")
        return
    minutes: dict[str, int] = {}
    for _, _, cpt, mins in members:
        if mins is not None:
            minutes[cpt] = minutes.get(cpt, 0) + mins
    enc = index.encounter(key)
    total_timed, total_treatment = _encounter_totals(enc, reading.config)
    performer = index.clinician(next((p.actor for p in first.performer or []), None), first)
    zone = reading.config.profile.zone  # dateTimes are dated on the clinic's clock
    dos = as_date(first.performedDateTime, zone) or (
        as_date(first.performedPeriod.start, zone) if first.performedPeriod else None
    )
    resources: list[Resource] = [m[1] for m in members]
    try:
        version = reading.version(resources)
        reading.parts.append(
            DocumentationPart(
                source="fhir",
                message_id=version.control_id,
                version=version,
                visit=key,
                patient_ref=patient,
                source_id=f"fhir-procedures:{key.text}"[:128],
                date_of_service=dos or encounter_date(enc, zone),
                discipline=encounter_discipline(enc, reading.config),
                author_npi=performer.npi,
                author_credential=performer.credential,
                minutes_by_cpt=minutes,
                total_timed_minutes=total_timed,
                total_treatment_minutes=total_treatment,
            )
        )
    except ValidationError as exc:
        reading.reject(i, first, RejectReason.BAD_VALUE, exc.errors(include_url=False)[0]["msg"])


def _encounter_totals(enc: Encounter | None, config: EhrConfig) -> tuple[int | None, int | None]:
    """Total timed minutes: the configured Encounter extension. Total treatment minutes: its
    extension, else Encounter.length in minutes ("quantity of time the encounter lasted")."""
    if enc is None:
        return None, None
    settings = config.profile.fhir
    values: dict[str, int] = {}
    for ext in enc.extension or []:
        if ext.valueInteger is not None:
            values[ext.url or ""] = int(ext.valueInteger)
    timed = values.get(settings.total_timed_minutes_extension)
    treatment = values.get(settings.total_treatment_minutes_extension)
    length = enc.length
    if (
        treatment is None
        and length is not None
        and length.value is not None
        and (length.code or length.unit) in ("min", "minutes", "minute")
    ):
        treatment = int(length.value)
    return timed, treatment
