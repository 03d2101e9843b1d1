"""Claim (use = claim) items, or ChargeItems -> charges of the encounter each item references
(ehr_ncci.md 4, docs/integration-hl7.md "FHIR"): CPT/HCPCS from productOrService / code, units
from quantity, modifiers from Claim.item.modifier (ChargeItem has no modifier element in R4B: a
configured extension), rendering NPI from the care team / performer Practitioner, payer from
Claim.insurer or the first Coverage.payor. A Claim with use preauthorization/predetermination is
not a visit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.claim import Claim, ClaimItem
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from ehr.codes import DISCIPLINE_MODIFIERS, FHIR_CPT, modifier
from ehr.fhircommon import (
    BundleReading,
    as_date,
    cpt_of,
    encounter_date,
    encounter_discipline,
    required_visit_key,
)
from ehr.fhirindex import NPI_SYSTEM, BundleIndex, Clinician
from ehr.parts import ChargeLine, ChargePart, VisitKey
from ehr.profile import EhrConfig, PayerEntry
from ehr.rejection import Problem, RejectReason, shown
from schemas.visit import Payer

MAX_UNITS = 96


@dataclass
class _LineDraft:
    cpt: str
    units: int
    modifiers: list[str]
    dos: date | None
    rendering: Clinician
    transaction_id: str | None


@dataclass
class _ChargeGroup:
    key: VisitKey
    patient: str | None
    resources: list[Resource] = field(default_factory=list)
    lines: list[_LineDraft] = field(default_factory=list)
    payer_refs: list[Reference | None] = field(default_factory=list)


def charges_from_claim(reading: BundleReading, i: int, claim: Claim) -> None:
    if claim.use != "claim":
        reading.reject(
            i,
            claim,
            RejectReason.NOT_A_VISIT,
            f"Claim.use {shown(str(claim.use))} is not 'claim': a request for a decision, not a "
            "rendered visit",
        )
        return
    if claim.status in ("cancelled", "entered-in-error"):
        reading.reject(i, claim, RejectReason.NOT_A_VISIT, f"Claim.status is {claim.status}")
        return
    problems: list[Problem] = []
    groups: dict[str, _ChargeGroup] = {}
    index = reading.index
    patient = index.patient_ref(claim.patient, claim)
    for item in claim.item or []:
        draft, ref = _claim_item(reading, claim, item, problems)
        where = f"Claim.item[{item.sequence}].encounter"
        key = required_visit_key(index, ref, claim, problems, where)
        if draft is None or key is None:
            continue
        group = groups.setdefault(key.text, _ChargeGroup(key, patient, [claim]))
        group.lines.append(draft)
        group.payer_refs = [claim.insurer]
    if not claim.item:
        problems.append(_p(RejectReason.MISSING_FIELD, "Claim.item is empty"))
    _finish_charges(reading, i, claim, groups, problems)


def _claim_item(
    reading: BundleReading, claim: Claim, item: ClaimItem, problems: list[Problem]
) -> tuple[_LineDraft | None, Reference | None]:
    where = f"Claim.item[{item.sequence}]"
    cpt = cpt_of(item.productOrService)
    units = _units(item.quantity.value if item.quantity else None, where, problems)
    mods = _modifiers([c for cc in item.modifier or [] for c in cc.coding or []], where, problems)
    if cpt is None:
        problems.append(
            _p(
                RejectReason.NO_PROCEDURE_CODE,
                f"{where}.productOrService has no CPT ({FHIR_CPT}) or HCPCS coding",
            )
        )
    zone = reading.config.profile.zone  # dateTimes are dated on the clinic's clock
    dos = as_date(item.servicedDate, zone) or (
        as_date(item.servicedPeriod.start, zone) if item.servicedPeriod else None
    )
    provider: Reference | None = claim.provider
    for seq in item.careTeamSequence or []:
        team = next((t for t in claim.careTeam or [] if t.sequence == seq), None)
        if team is not None:
            provider = team.provider
            break
    ref = item.encounter[0] if item.encounter else None
    if cpt is None or units is None or mods is None:
        return None, ref
    return _LineDraft(
        cpt=cpt,
        units=units,
        modifiers=mods,
        dos=dos,
        rendering=reading.index.clinician(provider, claim),
        transaction_id=None,
    ), ref


def charges_from_charge_items(reading: BundleReading, items: list[tuple[int, ChargeItem]]) -> None:
    index = reading.index
    groups: dict[str, _ChargeGroup] = {}
    problems: list[Problem] = []
    ext_url = reading.config.profile.fhir.chargeitem_modifier_extension
    for i, ci in items:
        where = f"entry[{i}] ChargeItem"
        if ci.status not in ("billable", "billed"):
            reading.reject(i, ci, RejectReason.NOT_A_VISIT, f"ChargeItem.status is {ci.status}")
            continue
        cpt = cpt_of(ci.code)
        if cpt is None:
            reading.reject(
                i,
                ci,
                RejectReason.NO_PROCEDURE_CODE,
                f"ChargeItem.code has no CPT ({FHIR_CPT}) or HCPCS coding",
            )
            continue
        units = _units(ci.quantity.value if ci.quantity else None, where, problems)
        codings = []
        for ext in ci.extension or []:
            if ext.url == ext_url:
                codings += _ext_codings(ext)
        mods = _modifiers(codings, where, problems)
        key = required_visit_key(index, ci.context, ci, problems, f"{where}.context")
        if units is None or mods is None or key is None:
            continue
        performer = next((p.actor for p in ci.performer or []), None)
        zone = reading.config.profile.zone  # dateTimes are dated on the clinic's clock
        dos = as_date(ci.occurrenceDateTime, zone) or (
            as_date(ci.occurrencePeriod.start, zone) if ci.occurrencePeriod else None
        )
        patient = index.patient_ref(ci.subject, ci)
        group = groups.setdefault(key.text, _ChargeGroup(key, patient))
        group.resources.append(ci)
        group.lines.append(
            _LineDraft(
                cpt=cpt,
                units=units,
                modifiers=mods,
                dos=dos,
                rendering=index.clinician(performer, ci),
                transaction_id=(ci.id or None),
            )
        )
    first_i, first = items[0]
    _finish_charges(reading, first_i, first, groups, problems)


def billed_as_therapy(index: BundleIndex) -> set[tuple[VisitKey, str]]:
    """The (visit, code) pairs the bundle bills with a therapy modifier GP/GO/GN, on an item of
    a Claim (use claim, not cancelled) or a billable/billed ChargeItem; read once per bundle.
    Pub. 100-04 Ch. 5 sec. 20.1: those modifiers identify a service delivered under a therapy
    plan of care, so the bundle itself says the code was therapy (CMS's "always"/"sometimes
    therapy" codes the catalog lacks: 92609, 97597). Read from the resources, not the charge
    parts, so the answer does not depend on whether the charges are refused for another reason."""
    billed: set[tuple[VisitKey, str]] = set()
    for _, claim in index.of_type(Claim):
        if claim.use != "claim" or claim.status in ("cancelled", "entered-in-error"):
            continue
        for item in claim.item or []:
            codings = [c for cc in item.modifier or [] for c in cc.coding or []]
            ref = item.encounter[0] if item.encounter else None
            _add_therapy_line(billed, index, cpt_of(item.productOrService), codings, ref, claim)
    url = index.config.profile.fhir.chargeitem_modifier_extension
    for _, ci in index.of_type(ChargeItem):
        if ci.status not in ("billable", "billed"):
            continue
        codings = [c for ext in ci.extension or [] if ext.url == url for c in _ext_codings(ext)]
        _add_therapy_line(billed, index, cpt_of(ci.code), codings, ci.context, ci)
    return billed


def _add_therapy_line(
    billed: set[tuple[VisitKey, str]],
    index: BundleIndex,
    cpt: str | None,
    codings: Sequence[Any],
    ref: Reference | None,
    owner: Resource,
) -> None:
    mods = {modifier(str(getattr(c, "code", "") or "")) for c in codings}
    if cpt is None or not mods & DISCIPLINE_MODIFIERS.keys():
        return
    key = index.visit_key(ref, owner)
    if key is not None:
        billed.add((key, cpt))


def _ext_codings(ext: Extension) -> list[Any]:
    if ext.valueCoding is not None:
        return [ext.valueCoding]
    if ext.valueCodeableConcept is not None:
        return list(ext.valueCodeableConcept.coding or [])
    if ext.valueCode:
        return [Coding(code=ext.valueCode)]
    return []


def _finish_charges(
    reading: BundleReading,
    i: int,
    resource: Resource,
    groups: dict[str, _ChargeGroup],
    problems: list[Problem],
) -> None:
    parts = [_charge_part(reading, group, problems) for group in groups.values()]
    if problems:
        reading.reject_all(i, resource, problems)
        return
    reading.parts += [p for p in parts if p is not None]


def _p(reason: RejectReason, detail: str) -> Problem:
    return Problem(reason=reason, detail=detail)


def _charge_part(
    reading: BundleReading, group: _ChargeGroup, problems: list[Problem]
) -> ChargePart | None:
    where = f"encounter {group.key.visit_number}"
    encounter = reading.index.encounter(group.key)
    mods = {m for line in group.lines for m in line.modifiers}
    disciplines = {DISCIPLINE_MODIFIERS[m] for m in mods if m in DISCIPLINE_MODIFIERS}
    discipline = next(iter(disciplines)) if len(disciplines) == 1 else None
    if len(disciplines) > 1:
        problems.append(
            _p(
                RejectReason.BAD_VALUE,
                f"{where}: items carry modifiers of more than one discipline (GP/GO/GN)",
            )
        )
    elif discipline is None:
        discipline = encounter_discipline(encounter, reading.config)
        if discipline is None:
            problems.append(
                _p(
                    RejectReason.NOT_THERAPY,
                    f"{where}: no item carries a GP/GO/GN modifier and the Encounter's serviceType "
                    "is not in the profile's [departments]: not a therapy charge",
                )
            )
    keys = reading.index.payer_keys(group.payer_refs)
    entry = _payer_entry(keys, reading.config)
    if entry is None:
        problems.append(
            _p(
                RejectReason.UNMAPPED_CODE,
                f"{where}: payer {', '.join(shown(k) for k in keys)} not in the profile's [payers]",
            )
            if keys
            else _p(
                RejectReason.MISSING_FIELD,
                f"{where}: no insurer or Coverage.payor: the payer is absent",
            )
        )
    npis = {line.rendering.npi for line in group.lines if line.rendering.npi}
    if len(npis) != 1:
        problems.append(
            _p(
                RejectReason.MISSING_FIELD,
                f"{where}: the rendering Practitioner has no NPI ({NPI_SYSTEM})",
            )
            if not npis
            else _p(RejectReason.BAD_VALUE, f"{where}: items name different rendering NPIs")
        )
    day = encounter_date(encounter, reading.config.profile.zone)
    dates = {line.dos for line in group.lines if line.dos} or ({day} if day else set())
    if len(dates) != 1:
        problems.append(
            _p(
                RejectReason.BAD_VALUE,
                f"{where}: the service date is absent or differs between items",
            )
        )
    if group.patient is None:
        problems.append(_p(RejectReason.MISSING_FIELD, f"{where}: the patient reference is absent"))
    if problems or discipline is None or entry is None or group.patient is None:
        return None
    try:
        version = reading.version(group.resources)
        return ChargePart(
            source="fhir",
            message_id=version.control_id,
            version=version,
            visit=group.key,
            patient_ref=group.patient,
            date_of_service=dates.pop(),
            discipline=discipline,
            payer=Payer(payer_id=entry.payer_id, kind=entry.kind, unit_rule=entry.unit_rule),
            rendering_npi=npis.pop(),
            rendering_credential=next(
                (ln.rendering.credential for ln in group.lines if ln.rendering.credential), None
            ),
            lines=[
                ChargeLine(
                    line_id=str(n),
                    cpt=ln.cpt,
                    units=ln.units,
                    modifiers=ln.modifiers,
                    transaction_id=ln.transaction_id,
                )
                for n, ln in enumerate(group.lines, start=1)
            ],
        )
    except ValidationError as exc:
        problems.append(
            _p(RejectReason.BAD_VALUE, f"{where}: {exc.errors(include_url=False)[0]['msg']}")
        )
        return None


def _payer_entry(keys: list[str], config: EhrConfig) -> PayerEntry | None:
    """The first key the profile's [payers] knows (as written, else upper-cased), else its
    default payer."""
    for key in keys:
        entry = config.profile.payers.get(key) or config.profile.payers.get(key.upper())
        if entry is not None:
            return entry
    return config.profile.default_payer


def _units(value: Decimal | float | int | None, where: str, problems: list[Problem]) -> int | None:
    if value is None:
        problems.append(
            _p(RejectReason.MISSING_FIELD, f"{where}.quantity is absent: units are required")
        )
        return None
    number = Decimal(str(value))
    if number != number.to_integral_value() or not 0 <= number <= MAX_UNITS:
        problems.append(
            _p(
                RejectReason.BAD_VALUE,
                f"{where}.quantity is not a whole number of units 0-{MAX_UNITS}",
            )
        )
        return None
    return int(number)


def _modifiers(codings: Sequence[Any], where: str, problems: list[Problem]) -> list[str] | None:
    out: list[str] = []
    for coding in codings:
        code = modifier(str(getattr(coding, "code", "") or ""))
        if code is None:
            problems.append(
                _p(
                    RejectReason.BAD_VALUE,
                    f"{where}.modifier holds a code that is not a two-character modifier",
                )
            )
            return None
        if code not in out:
            out.append(code)
    if len(out) > 4:
        problems.append(_p(RejectReason.BAD_VALUE, f"{where} has more than 4 modifiers"))
        return None
    return out
