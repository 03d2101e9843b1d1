"""FHIR R4B (fhir.resources.R4B) -> ChargePart / DocumentationPart, one per encounter and source.

Mapping (ehr_ncci.md 4, docs/integration-hl7.md "FHIR"):
- Claim (use = claim) items, or ChargeItems -> charges of the encounter each item references:
  CPT/HCPCS from productOrService / code, units from quantity, modifiers from Claim.item.modifier
  (ChargeItem has no modifier element in R4B: a configured extension), rendering NPI from the
  care team / performer Practitioner, payer from Claim.insurer or the first Coverage.payor.
- Procedure (status completed) with a CPT/HCPCS coding -> minutes for that code: the minutes
  extension, else the length of performedPeriod. Procedures of one encounter form one part.
- DocumentReference -> a document: kind from its type ([fhir.document_types]); signed when
  docStatus is final/amended, status current and an authenticator is present (signed_at = date).
- ExplanationOfBenefit, a Claim with use preauthorization/predetermination: not a visit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.claim import Claim, ClaimItem
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from ehr import fhirindex as fx
from ehr.codes import DISCIPLINE_MODIFIERS, FHIR_CPT, fhir_procedure_code, modifier
from ehr.parts import ChargeLine, ChargePart, DocumentationPart, PartVersion, VisitKey
from ehr.profile import EhrConfig
from ehr.rejection import Problem, Rejection, RejectReason, shown
from schemas.common import Credential, Discipline
from schemas.visit import Document, Payer

Part = ChargePart | DocumentationPart
MAX_UNITS = 96


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
    ctx = _Context(index, config, received_at)
    for i, eob in index.of_type(ExplanationOfBenefit):
        ctx.reject(
            i,
            eob,
            RejectReason.NOT_A_VISIT,
            "an ExplanationOfBenefit is a payer's adjudication, not a rendered visit",
        )
    for i, claim in index.of_type(Claim):
        _claim(ctx, i, claim)
    items = index.of_type(ChargeItem)
    if items:
        _charge_items(ctx, items)
    procedures = index.of_type(Procedure)
    if procedures:
        _procedures(ctx, procedures)
    for i, doc in index.of_type(DocumentReference):
        _document(ctx, i, doc)
    if not ctx.parts and not ctx.rejections:
        ctx.rejections.append(
            Rejection.one(
                RejectReason.NOT_A_VISIT,
                "no Claim, ChargeItem, Procedure or DocumentReference to read",
                index.bundle_id or None,
            )
        )
    return FhirResult(tuple(ctx.parts), tuple(ctx.rejections))


@dataclass
class _Context:
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
        times = [fx.as_time(r.meta.lastUpdated) for r in resources if r.meta is not None]
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


# ---- charges -------------------------------------------------------------------------------


@dataclass
class _LineDraft:
    cpt: str
    units: int
    modifiers: list[str]
    dos: date | None
    npi: str | None
    credential: Credential | None
    transaction_id: str | None


@dataclass
class _ChargeGroup:
    key: VisitKey
    patient: str | None
    resources: list[Resource] = field(default_factory=list)
    lines: list[_LineDraft] = field(default_factory=list)
    payer_refs: list[Reference | None] = field(default_factory=list)


def _claim(ctx: _Context, i: int, claim: Claim) -> None:
    if claim.use != "claim":
        ctx.reject(
            i,
            claim,
            RejectReason.NOT_A_VISIT,
            f"Claim.use {shown(str(claim.use))} is not 'claim': a request for a decision, not a "
            "rendered visit",
        )
        return
    if claim.status in ("cancelled", "entered-in-error"):
        ctx.reject(i, claim, RejectReason.NOT_A_VISIT, f"Claim.status is {claim.status}")
        return
    problems: list[Problem] = []
    groups: dict[str, _ChargeGroup] = {}
    patient = fx.patient_of(ctx.index, claim.patient, ctx.config, claim)
    for item in claim.item or []:
        draft, ref = _claim_item(ctx, claim, item, problems)
        key = _encounter_key(ctx, ref, claim, problems, f"Claim.item[{item.sequence}].encounter")
        if draft is None or key is None:
            continue
        group = groups.setdefault(key.text, _ChargeGroup(key, patient, [claim]))
        group.lines.append(draft)
        group.payer_refs = [claim.insurer]
    if not claim.item:
        problems.append(_p(RejectReason.MISSING_FIELD, "Claim.item is empty"))
    _finish_charges(ctx, i, claim, groups, problems)


def _claim_item(
    ctx: _Context, claim: Claim, item: ClaimItem, problems: list[Problem]
) -> tuple[_LineDraft | None, Reference | None]:
    where = f"Claim.item[{item.sequence}]"
    cpt = _cpt(item.productOrService)
    units = _units(item.quantity.value if item.quantity else None, where, problems)
    mods = _modifiers([c for cc in item.modifier or [] for c in cc.coding or []], where, problems)
    if cpt is None:
        problems.append(
            _p(
                RejectReason.NO_PROCEDURE_CODE,
                f"{where}.productOrService has no CPT ({FHIR_CPT}) or HCPCS coding",
            )
        )
    dos = fx.as_date(item.servicedDate) or (
        fx.as_date(item.servicedPeriod.start) if item.servicedPeriod else None
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
        npi=fx.npi_of(ctx.index, provider, claim),
        credential=fx.credential_of(ctx.index, provider, ctx.config, claim),
        transaction_id=None,
    ), ref


def _charge_items(ctx: _Context, items: list[tuple[int, ChargeItem]]) -> None:
    groups: dict[str, _ChargeGroup] = {}
    problems: list[Problem] = []
    ext_url = ctx.config.profile.fhir.chargeitem_modifier_extension
    for i, ci in items:
        where = f"entry[{i}] ChargeItem"
        if ci.status not in ("billable", "billed"):
            ctx.reject(i, ci, RejectReason.NOT_A_VISIT, f"ChargeItem.status is {ci.status}")
            continue
        cpt = _cpt(ci.code)
        if cpt is None:
            ctx.reject(
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
        key = _encounter_key(ctx, ci.context, ci, problems, f"{where}.context")
        if units is None or mods is None or key is None:
            continue
        performer = next((p.actor for p in ci.performer or []), None)
        dos = fx.as_date(ci.occurrenceDateTime) or (
            fx.as_date(ci.occurrencePeriod.start) if ci.occurrencePeriod else None
        )
        patient = fx.patient_of(ctx.index, ci.subject, ctx.config, ci)
        group = groups.setdefault(key.text, _ChargeGroup(key, patient))
        group.resources.append(ci)
        group.lines.append(
            _LineDraft(
                cpt=cpt,
                units=units,
                modifiers=mods,
                dos=dos,
                npi=fx.npi_of(ctx.index, performer, ci),
                credential=fx.credential_of(ctx.index, performer, ctx.config, ci),
                transaction_id=(ci.id or None),
            )
        )
    first_i, first = items[0]
    _finish_charges(ctx, first_i, first, groups, problems)


def _ext_codings(ext: Extension) -> list[Any]:
    if ext.valueCoding is not None:
        return [ext.valueCoding]
    if ext.valueCodeableConcept is not None:
        return list(ext.valueCodeableConcept.coding or [])
    if ext.valueCode:
        return [Coding(code=ext.valueCode)]
    return []


def _finish_charges(
    ctx: _Context,
    i: int,
    resource: Resource,
    groups: dict[str, _ChargeGroup],
    problems: list[Problem],
) -> None:
    parts = [_charge_part(ctx, group, problems) for group in groups.values()]
    if problems:
        located = [
            Problem(reason=p.reason, detail=f"{ctx.where(i, resource)}: {p.detail}")
            for p in problems
        ]
        ctx.rejections.append(Rejection.of(located, ctx.ref_of(resource)))
        return
    ctx.parts += [p for p in parts if p is not None]


def _p(reason: RejectReason, detail: str) -> Problem:
    return Problem(reason=reason, detail=detail)


def _charge_part(ctx: _Context, group: _ChargeGroup, problems: list[Problem]) -> ChargePart | None:
    where = f"encounter {group.key.visit_number}"
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
        discipline = _encounter_discipline(ctx, group.key)
        if discipline is None:
            problems.append(
                _p(
                    RejectReason.NOT_THERAPY,
                    f"{where}: no item carries a GP/GO/GN modifier and the Encounter's serviceType "
                    "is not in the profile's [departments]: not a therapy charge",
                )
            )
    entry = fx.payer_entry(fx.payer_keys(ctx.index, group.payer_refs), ctx.config)
    if entry is None:
        keys = fx.payer_keys(ctx.index, group.payer_refs)
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
    npis = {line.npi for line in group.lines if line.npi}
    if len(npis) != 1:
        problems.append(
            _p(
                RejectReason.MISSING_FIELD,
                f"{where}: the rendering Practitioner has no NPI ({fx.NPI_SYSTEM})",
            )
            if not npis
            else _p(RejectReason.BAD_VALUE, f"{where}: items name different rendering NPIs")
        )
    dates = {line.dos for line in group.lines if line.dos} or _encounter_dates(ctx, group.key)
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
        return ChargePart(
            source="fhir",
            message_id=ctx.version(group.resources).control_id,
            version=ctx.version(group.resources),
            visit=group.key,
            patient_ref=group.patient,
            date_of_service=dates.pop(),
            discipline=discipline,
            payer=Payer(payer_id=entry.payer_id, kind=entry.kind, unit_rule=entry.unit_rule),
            rendering_npi=npis.pop(),
            rendering_credential=next((ln.credential for ln in group.lines if ln.credential), None),
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


def _cpt(concept: CodeableConcept | None) -> str | None:
    for coding in concept.coding or [] if concept else []:
        code = fhir_procedure_code(coding.code, coding.system)
        if code is not None:
            return code
    return None


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


def _encounter_key(
    ctx: _Context, ref: Reference | None, owner: Resource, problems: list[Problem], where: str
) -> VisitKey | None:
    key = fx.visit_key(ctx.index, ref, ctx.config, owner)
    if key is None and ref is None:
        encounters = ctx.index.of_type(Encounter)
        if len(encounters) == 1:  # the bundle's only encounter
            key = _key_of(ctx, *encounters[0])
    if key is None:
        problems.append(
            _p(
                RejectReason.MISSING_FIELD,
                f"{where} is absent or names no Encounter: the visit key is required",
            )
        )
    return key


def _encounter(ctx: _Context, key: VisitKey) -> Encounter | None:
    for i, enc in ctx.index.of_type(Encounter):
        if _key_of(ctx, i, enc) == key:
            return enc
    return None


def _key_of(ctx: _Context, i: int, enc: Encounter) -> VisitKey | None:
    url = next((e.full_url for e in ctx.index.entries if e.index == i and e.full_url), "")
    ref = Reference(reference=url or f"Encounter/{enc.id}")
    return fx.visit_key(ctx.index, ref, ctx.config)


def _encounter_discipline(ctx: _Context, key: VisitKey) -> Discipline | None:
    enc = _encounter(ctx, key)
    for concept in (enc.serviceType,) if enc and enc.serviceType else ():
        for coding in concept.coding or []:
            found = ctx.config.profile.departments.get((coding.code or "").upper())
            if found is not None:
                return found
    return None


def _encounter_dates(ctx: _Context, key: VisitKey) -> set[date]:
    enc = _encounter(ctx, key)
    day = fx.as_date(enc.period.start) if enc and enc.period else None
    return {day} if day else set()


# ---- documentation -------------------------------------------------------------------------


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
    start = fx.as_time(period.start) if period else None
    end = fx.as_time(period.end) if period else None
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() // 60)


def _procedures(ctx: _Context, procs: list[tuple[int, Procedure]]) -> None:
    groups: dict[str, tuple[VisitKey, list[tuple[int, Procedure, str, int | None]]]] = {}
    for i, proc in procs:
        if proc.status != "completed":
            ctx.reject(i, proc, RejectReason.NOT_A_VISIT, f"Procedure.status is {proc.status}")
            continue
        cpt = _cpt(proc.code)
        if cpt is None:
            ctx.reject(
                i,
                proc,
                RejectReason.NO_PROCEDURE_CODE,
                f"Procedure.code has no CPT ({FHIR_CPT}) or HCPCS coding; {_systems(proc.code)}",
            )
            continue
        minutes = procedure_minutes(proc, ctx.config)
        if minutes is not None and not 0 <= minutes <= 1440:
            ctx.reject(i, proc, RejectReason.BAD_VALUE, "the procedure's minutes are not 0-1440")
            continue
        problems: list[Problem] = []
        key = _encounter_key(ctx, proc.encounter, proc, problems, "Procedure.encounter")
        if key is None:
            ctx.reject(i, proc, problems[0].reason, problems[0].detail)
            continue
        groups.setdefault(key.text, (key, []))[1].append((i, proc, cpt, minutes))
    for key, members in groups.values():
        _procedure_part(ctx, key, members)


def _systems(concept: CodeableConcept | None) -> str:
    systems = sorted({c.system or "(no system)" for c in (concept.coding or [] if concept else [])})
    return "codings: " + (", ".join(systems) if systems else "none")


def _procedure_part(
    ctx: _Context, key: VisitKey, members: list[tuple[int, Procedure, str, int | None]]
) -> None:
    i, first = members[0][0], members[0][1]
    patient = fx.patient_of(ctx.index, first.subject, ctx.config, first)
    if patient is None:
        ctx.reject(i, first, RejectReason.MISSING_FIELD, "Procedure.subject is absent")
        return
    minutes: dict[str, int] = {}
    for _, _, cpt, mins in members:
        if mins is not None:
            minutes[cpt] = minutes.get(cpt, 0) + mins
    enc = _encounter(ctx, key)
    total_timed, total_treatment = _encounter_totals(ctx, enc)
    performer = next((p.actor for p in first.performer or []), None)
    dos = fx.as_date(first.performedDateTime) or (
        fx.as_date(first.performedPeriod.start) if first.performedPeriod else None
    )
    resources: list[Resource] = [m[1] for m in members]
    try:
        ctx.parts.append(
            DocumentationPart(
                source="fhir",
                message_id=ctx.version(resources).control_id,
                version=ctx.version(resources),
                visit=key,
                patient_ref=patient,
                source_id=f"fhir-procedures:{key.text}"[:128],
                date_of_service=dos or next(iter(_encounter_dates(ctx, key)), None),
                discipline=_encounter_discipline(ctx, key),
                author_npi=fx.npi_of(ctx.index, performer, first),
                author_credential=fx.credential_of(ctx.index, performer, ctx.config, first),
                minutes_by_cpt=minutes,
                total_timed_minutes=total_timed,
                total_treatment_minutes=total_treatment,
            )
        )
    except ValidationError as exc:
        ctx.reject(i, first, RejectReason.BAD_VALUE, exc.errors(include_url=False)[0]["msg"])


def _encounter_totals(ctx: _Context, enc: Encounter | None) -> tuple[int | None, int | None]:
    """Total timed minutes: the configured Encounter extension. Total treatment minutes: its
    extension, else Encounter.length in minutes ("quantity of time the encounter lasted")."""
    if enc is None:
        return None, None
    settings = ctx.config.profile.fhir
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


def _document(ctx: _Context, i: int, doc: DocumentReference) -> None:
    settings = ctx.config.profile.fhir
    codings = list(doc.type.coding or []) if doc.type else []
    entry = next(
        (
            settings.document_types[f"{c.system}|{c.code}"]
            for c in codings
            if f"{c.system}|{c.code}" in settings.document_types
        ),
        None,
    )
    if entry is None:
        types = ", ".join(shown(f"{c.system}|{c.code}", 60) for c in codings) or "none"
        ctx.reject(
            i,
            doc,
            RejectReason.UNMAPPED_CODE,
            f"DocumentReference.type ({types}) is not in the profile's [fhir.document_types]",
        )
        return
    problems: list[Problem] = []
    context_ref = doc.context.encounter[0] if doc.context and doc.context.encounter else None
    key = _encounter_key(ctx, context_ref, doc, problems, "DocumentReference.context.encounter")
    patient = fx.patient_of(ctx.index, doc.subject, ctx.config, doc)
    doc_id = (
        (doc.masterIdentifier.value if doc.masterIdentifier else None)
        or next((x.value for x in doc.identifier or [] if x.value), None)
        or doc.id
    )
    if key is None or patient is None or not doc_id:
        detail = problems[0].detail if problems else "DocumentReference.subject or its id is absent"
        ctx.reject(i, doc, RejectReason.MISSING_FIELD, detail)
        return
    # Signed: docStatus final/amended, status current, an authenticator (ehr_ncci.md 4). R4B has
    # no signing time; DocumentReference.date ("when this document reference was created") is it.
    signed = doc.docStatus in ("final", "amended") and doc.status == "current"
    signer = doc.authenticator if doc.authenticator is not None else None
    signed_at = fx.as_time(doc.date) if signed and signer is not None else None
    author = signer or next(iter(doc.author or []), None)
    period_start = (
        fx.as_date(doc.context.period.start) if doc.context and doc.context.period else None
    )
    try:
        document = Document(
            doc_id=doc_id[:128],
            kind=entry.kind,
            cpt=entry.cpt,
            signed_at=signed_at,
            author_credential=fx.credential_of(ctx.index, author, ctx.config, doc),
            document_date=period_start or fx.as_date(doc.date),
            discipline=entry.discipline if entry.kind == "referral" else None,
        )
        ctx.parts.append(
            DocumentationPart(
                source="fhir",
                message_id=ctx.version([doc]).control_id,
                version=ctx.version([doc]),
                visit=key,
                patient_ref=patient,
                source_id=f"fhir-doc:{doc_id}"[:128],
                # status entered-in-error (withdrawn) or superseded (a newer one replaces it).
                status="active" if doc.status == "current" else "cancelled",
                date_of_service=period_start,
                discipline=entry.discipline,
                author_npi=fx.npi_of(ctx.index, author, doc),
                author_credential=document.author_credential,
                documents=[document],
            )
        )
    except ValidationError as exc:
        ctx.reject(i, doc, RejectReason.BAD_VALUE, exc.errors(include_url=False)[0]["msg"])
