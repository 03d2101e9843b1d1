"""MDM^T02..T11 and ORU^R01 -> DocumentationPart: TXA (HL7 v2.5.1 ch. 9.6.1) and the profile's
OBX codes (ehr_ncci.md 2.2, 2.3; OBX coding in ehr/profile.toml [obx])."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from ehr import hl7tree
from ehr.codes import procedure_code
from ehr.hl7common import (
    Common,
    common_fields,
    credential_of,
    department_discipline,
    integer,
    npi_of,
    opaque,
    problem,
)
from ehr.hl7header import MessageHeader
from ehr.hl7time import local_date, parse_dtm
from ehr.parts import DocumentationPart, VisitKey
from ehr.profile import DocumentTypeEntry, EhrConfig, ObxCodes, Profile
from ehr.rejection import Problem, Rejection, RejectReason, shown
from schemas.common import Credential, Discipline
from schemas.visit import Document

#: MDM events that carry content (T02 original, T04 status change, T06 addendum, T08 edit, T10
#: replacement) and the cancel (T11); ehr_ncci.md 2.1.
CONTENT_EVENTS = frozenset({"T02", "T04", "T06", "T08", "T10"})
CANCEL_EVENT = "T11"
_DOC_FIELDS_DATE = ("plan_start", "plan_end", "covers_from", "covers_through")
_DOC_FIELDS_TIME = ("sent_to_certifier_at", "verbal_order_at")


@dataclass
class ObxReading:
    """The profile-coded OBX values of a message."""

    found: int = 0
    minutes_by_cpt: dict[str, int] = field(default_factory=dict)
    assistant_by_cpt: dict[str, int] = field(default_factory=dict)
    total_timed: int | None = None
    total_treatment: int | None = None
    document: dict[str, Any] = field(default_factory=dict)
    episode_start: date | None = None


@dataclass(frozen=True, slots=True)
class Signature:
    signed_at: datetime | None
    npi: str | None
    credential: Credential | None


def read_obx(msg: hl7tree.Message, config: EhrConfig, problems: list[Problem]) -> ObxReading:
    obx_codes = config.profile.obx
    names = obx_codes.names_by_code()
    out = ObxReading()
    for seq, obx in enumerate(msg.all("OBX"), start=1):
        code, name, foreign = _profile_code(obx, names, obx_codes.coding_systems)
        if foreign is not None:
            # The profile's code under a system that is not local: a sender that codes its
            # minutes under another system would otherwise lose them without a word (and get
            # minutes alerts). Rejected, so the profile (or the sender) is fixed and the message
            # replayed, as an unreadable minutes value is.
            problems.append(
                problem(
                    RejectReason.UNMAPPED_CODE,
                    f"OBX#{seq}: OBX-3 code {shown(code)} is one of the profile's [obx] codes but "
                    f"its coding system {shown(foreign)} is not local (HL7 table 0396: L or "
                    "99zzz) nor in [obx].coding_systems",
                    "OBX",
                    3,
                    seq,
                )
            )
            continue
        if name is None:
            unread = _unread_profile_value(obx, names, obx_codes)
            if unread is not None:
                # Issue 20 item 4: an OBX that looks like the profile's (minutes, or a profile
                # code in other letters) but is not read is reported, never dropped in silence.
                problems.append(
                    problem(RejectReason.UNMAPPED_CODE, f"OBX#{seq}: {unread}", "OBX", 3, seq)
                )
            continue  # else document content or someone else's observation
        out.found += 1

        def bad(detail: str, fld: int, seq: int = seq, code: str = code) -> None:
            problems.append(
                problem(RejectReason.BAD_VALUE, f"OBX#{seq} ({code}): {detail}", "OBX", fld, seq)
            )

        status = obx.value(11).upper()
        if status not in obx_codes.result_status:
            bad(
                f"OBX-11 result status {shown(status)} is not final (profile [obx].result_status)",
                11,
            )
            continue
        value = obx.value(5)
        _read_one(name, value, obx, out, config, bad)
    return out


def is_local_system(system: str, listed: list[str]) -> bool:
    """HL7 v2.5.1 table 0396 (coding system): `L` and `99zzz` ("99" followed by any characters)
    are both local coding systems; the profile's [obx].coding_systems adds others. Empty: the
    code is read as local (CE.3 is optional)."""
    text = system.upper()
    return not text or text == "L" or text.startswith("99") or text in {s.upper() for s in listed}


def _profile_code(
    obx: hl7tree.Segment, names: dict[str, str], listed: list[str]
) -> tuple[str, str | None, str | None]:
    """(code, the profile's name for it, None) for the OBX-3 identifier that is a profile code
    under a local system: CE.1/CE.3, else the alternate identifier CE.4/CE.6 (HL7 v2.5.1 ch. 2A, CE:
    components 4-6 are "the alternate or local coding system"; CE.6 absent means the locally
    defined system). When the only profile
    code stands under a non-local system: (code, None, that system). Else (CE.1, None, None)."""
    foreign: tuple[str, str] | None = None
    for code_comp, system_comp in ((1, 3), (4, 6)):
        code = obx.value(3, code_comp)
        name = names.get(code)
        if name is None:
            continue
        system = obx.value(3, system_comp)
        if is_local_system(system, listed):
            return code, name, None
        foreign = foreign or (code, system)
    if foreign is not None:
        return foreign[0], None, foreign[1]
    return obx.value(3, 1), None, None


#: OBX-6 units (CE.1, compared without letter case) that say minutes: UCUM `min`, the only unit
#: the profile's minutes OBX accepts (`_read_one`).
MINUTE_UNITS = frozenset({"min"})


def _unread_profile_value(
    obx: hl7tree.Segment, names: dict[str, str], codes: ObxCodes
) -> str | None:
    """Why an OBX whose OBX-3 is not one of the profile's codes must not be skipped, else None:
    its code differs from a profile code only in letter case (codes are case-sensitive, HL7
    v2.5.1 ch. 2A CE: not read, but said), or its unit OBX-6 is minutes (a sender's own code for
    therapy minutes the profile does not know). Codes in [obx].ignored_codes are skipped."""
    code, system = obx.value(3, 1), obx.value(3, 3)
    identifiers = [(code, system), (obx.value(3, 4), obx.value(3, 6))]
    if any(c in codes.ignored_codes for c, _ in identifiers if c):
        return None
    by_upper = {known.upper(): known for known in names}
    for text, text_system in identifiers:
        known = by_upper.get(text.upper()) if text else None
        if known is not None:
            return (
                f"OBX-3 code {shown(text)} (system {shown(text_system)}) differs from the "
                f"profile's [obx] code {shown(known)} ({names[known]}) only in letter case: "
                "codes are case-sensitive (HL7 v2.5.1 ch. 2A, CE), so it is not read; send "
                f"{shown(known)}, or list the code in [obx].ignored_codes if it means something else"
            )
    says = _says_minutes(obx)
    if says is not None:
        return (
            f"OBX-3 code {shown(code)} (system {shown(system)}) is not one of the profile's "
            f"[obx] codes, but {says} says minutes: add it to the profile's "
            "[obx] codes (total_timed_minutes, cpt_minutes, ...) if it carries therapy minutes, "
            "or to [obx].ignored_codes if not (e.g. travel time)"
        )
    return None


#: Words for minutes in OBX-6 (CE.1 identifier or CE.2 text) or in a numeric OBX-3's text:
#: UCUM `min` and the spellings senders write instead.
_MINUTE_WORD = re.compile(r"\b(?:min|mins|minute|minutes)\b", re.IGNORECASE)


def _says_minutes(obx: hl7tree.Segment) -> str | None:
    """Which field says this OBX carries minutes, else None: the unit OBX-6 (identifier or text:
    `min`, `mins`, `minute(s)`, any letter case), or, for a numeric value (OBX-2 NM), the text
    of OBX-3 (CE.2 or CE.5: "PT timed minutes")."""
    for comp in (1, 2):
        unit = obx.value(6, comp).strip()
        if unit and _MINUTE_WORD.fullmatch(unit):
            return f"OBX-6 unit {shown(unit)}"
    if obx.value(2).strip().upper() == "NM":
        for comp in (2, 5):
            text = obx.value(3, comp)
            if _MINUTE_WORD.search(text):
                return f"OBX-3 text {shown(text)} (a numeric value)"
    return None


def _read_one(
    name: str, value: str, obx: hl7tree.Segment, out: ObxReading, config: EhrConfig, bad: Any
) -> None:
    zone = config.profile.zone
    if name in (
        "cpt_minutes",
        "cpt_assistant_minutes",
        "total_timed_minutes",
        "total_treatment_minutes",
    ):
        minutes = integer(value, 0, 1440)
        unit = obx.value(6).lower()
        if minutes is None:
            bad("OBX-5 is not a whole number of minutes 0-1440", 5)
            return
        if unit and unit not in MINUTE_UNITS:
            bad("OBX-6 unit must be min (UCUM) or empty", 6)
            return
        if name in ("total_timed_minutes", "total_treatment_minutes"):
            setattr(
                out, "total_timed" if name == "total_timed_minutes" else "total_treatment", minutes
            )
            return
        cpt = procedure_code(obx.value(4))
        if cpt is None:
            bad("OBX-4 (observation sub-ID) must hold the CPT/HCPCS code the minutes belong to", 4)
            return
        target = out.minutes_by_cpt if name == "cpt_minutes" else out.assistant_by_cpt
        target[cpt] = target.get(cpt, 0) + minutes  # one code documented twice: its minutes add
        return
    try:
        if name == "document_cpt":
            cpt = procedure_code(obx.value(5, 1), obx.value(5, 3))
            if cpt is None:
                raise ValueError
            out.document["cpt"] = cpt
        elif name in _DOC_FIELDS_DATE or name == "episode_start_date":
            day = local_date(value, zone)  # DT as written; a DTM instant: the clinic's day
            if name == "episode_start_date":
                out.episode_start = day
            else:
                out.document[name] = day
        elif name in _DOC_FIELDS_TIME:
            out.document[name] = parse_dtm(value, zone)  # in the clinic's zone (hl7time)
        elif name == "delay_reason_documented":
            if value.upper() not in ("Y", "N"):
                raise ValueError
            out.document[name] = value.upper() == "Y"  # HL7 table 0136 yes/no
        elif name == "referral_discipline":
            out.document["discipline"] = Discipline(value.upper())
    except ValueError:
        bad(f"OBX-5 is not a valid value for {name}", 5)


def documentation_from_mdm(
    msg: hl7tree.Message, header: MessageHeader, config: EhrConfig
) -> DocumentationPart | Rejection:
    profile = config.profile
    problems: list[Problem] = []
    common = common_fields(msg, header, config, problems)
    txa = msg.first("TXA")
    if txa is None:
        problems.append(problem(RejectReason.MISSING_FIELD, "TXA segment is missing", "TXA"))
        return Rejection.of(problems, header.control_id or None)
    doc_id = txa.value(12)
    if not doc_id:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD, "TXA-12 (unique document number) is empty", "TXA", 12
            )
        )
    elif opaque(doc_id) is None:
        problems.append(problem(RejectReason.BAD_VALUE, "TXA-12 is not printable ASCII", "TXA", 12))
    # MSH-9.2 is the event; EVN-1 is kept for backward compatibility only (HL7 v2.5 ch. 3.4.1.1)
    # and is ignored, also when it disagrees (mdm_t02_msft_fhirconverter_01: EVN-1 T10, MSH-9 T02).
    if header.trigger_event == CANCEL_EVENT:
        visit = _visit(common, _txa_date(txa, profile, problems), problems, "TXA", 4)
        if problems or common is None:
            return Rejection.of(problems, header.control_id or None)
        return _part(common, f"mdm:{doc_id}", "cancelled", config, visit=visit)

    type_code = txa.value(2)
    entry = profile.documents.types.get(type_code.upper()) if type_code else None
    if not type_code:
        problems.append(
            problem(RejectReason.MISSING_FIELD, "TXA-2 (document type) is empty", "TXA", 2)
        )
    elif entry is None:
        problems.append(
            problem(
                RejectReason.UNMAPPED_CODE,
                f"TXA-2 {shown(type_code)} is not in the profile's [documents.types]",
                "TXA",
                2,
            )
        )
    obx = read_obx(msg, config, problems)
    signature = read_signature(txa, profile, problems)
    document_date = _txa_date(txa, profile, problems)
    # Date of service: TXA-4 (activity date/time, "the date/time identified in the document as
    # the date a procedure or activity occurred"), else TXA-6 (origination date/time, when the
    # document was created: the note is written at or after the visit, by the same clinic), else
    # PV1-44 (admit date/time: for a series account the series' first day, not this visit's).
    # HL7 v2.5.1 ch. 9.6.1.4, 9.6.1.6; ch. 3.4.3.44.
    origination = _txa_date(txa, profile, problems, 6) if document_date is None else None
    # A series account's visit is keyed by TXA-4 only: TXA-6 may be a later day (a note written
    # the next morning) and would key the note to a day without its charges.
    visit = _visit(common, document_date, problems, "TXA", 4)
    if problems or common is None or entry is None:
        return Rejection.of(problems, header.control_id or None)
    # TXA-19 CA/OB (HL7 table 0273): the document is not valid; it leaves the visit.
    withdrawn = txa.value(19).upper() in profile.documents.withdrawn_availability
    try:
        document = Document(
            doc_id=doc_id,
            kind=entry.kind,
            cpt=obx.document.pop("cpt", entry.cpt),
            signed_at=signature.signed_at,
            author_credential=signature.credential,
            document_date=document_date,
            **_referral_discipline(entry, obx.document),
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        return Rejection.one(
            RejectReason.BAD_VALUE,
            f"TXA/OBX document fields are inconsistent: {err['msg']}",
            header.control_id or None,
            segment="TXA",
        )
    discipline = entry.discipline or department_discipline(msg, [], profile)[0]
    return _part(
        common,
        f"mdm:{doc_id}",
        "cancelled" if withdrawn else "active",
        config,
        obx=obx,
        documents=[document],
        date_of_service=document_date or origination or _pv1_date(msg, profile),
        discipline=discipline,
        signature=signature,
        visit=visit,
    )


def _referral_discipline(entry: DocumentTypeEntry, fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    if "discipline" not in out and entry.discipline is not None and entry.kind == "referral":
        out["discipline"] = entry.discipline
    return out


def read_signature(txa: hl7tree.Segment, profile: Profile, problems: list[Problem]) -> Signature:
    """Signed = TXA-17 in the profile's signed statuses (LA/AU, HL7 table 0271) and a TXA-22
    repetition with a person (PPN.1 or PPN.2) and PPN.15 time (ehr_ncci.md 2.3 (c), (d)). The
    latest such time is signed_at. IP, DI, PA ... are not signed whatever TXA-22 says."""
    best: tuple[datetime, hl7tree.Comps] | None = None
    for rep in txa.reps(22):
        when = hl7tree.leaf(rep, 15)
        if not when or not (hl7tree.leaf(rep, 1) or hl7tree.leaf(rep, 2)):
            continue
        try:
            at = parse_dtm(when, profile.zone)  # the clinic's offset: its date is the local one
        except ValueError:
            problems.append(
                problem(RejectReason.BAD_VALUE, "TXA-22 PPN.15 is not a valid DTM", "TXA", 22)
            )
            continue
        if best is None or at > best[0]:
            best = (at, rep)
    originator = txa.reps(9)[0] if txa.reps(9) else None
    npi = npi_of(best[1], 13) if best else None
    credential = credential_of(best[1], 7, profile) if best else None
    if originator is not None:
        npi = npi or npi_of(originator, 13)
        credential = credential or credential_of(originator, 7, profile)
    if credential is None and npi is not None:
        credential = profile.providers.get(npi)
    signed = txa.value(17).upper() in profile.documents.signed_statuses and best is not None
    return Signature(signed_at=best[0] if signed and best else None, npi=npi, credential=credential)


def _txa_date(
    txa: hl7tree.Segment, profile: Profile, problems: list[Problem], fld: int = 4
) -> date | None:
    # TXA-4 activity date/time: the date of the visit the note documents (ehr_ncci.md 2.2). A
    # time written in another offset (20260303013000+0000) is dated on the clinic's clock
    # (ehr/hl7time.py local_date), so the note keys the same day as the charges' FT1-4.
    if not txa.value(fld):
        return None
    try:
        return local_date(txa.value(fld), profile.zone)
    except ValueError:
        problems.append(problem(RejectReason.BAD_VALUE, f"TXA-{fld} is not a date", "TXA", fld))
        return None


def _visit(
    common: Common | None, day: date | None, problems: list[Problem], segment: str, fld: int
) -> VisitKey | None:
    """The note's visit: for a recurring account (PV1-2 `R`, HL7 table 0004) the account on the
    note's own date (TXA-4, OBR-7), never PV1-44, which is the series' admit date."""
    if common is None or not common.recurring:
        return common.visit if common else None
    if day is None:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD,
                f"{segment}-{fld} (the note's date) is empty: a recurring account's visit (PV1-2 "
                "in the profile's recurring_patient_classes) is keyed by its date of service",
                segment,
                fld,
            )
        )
        return None
    return common.visit.on(day)


def _pv1_date(msg: hl7tree.Message, profile: Profile) -> date | None:
    pv1 = msg.first("PV1")
    try:
        # PV1-44 admit date/time, dated on the clinic's clock like TXA-4.
        return local_date(pv1.value(44), profile.zone) if pv1 and pv1.value(44) else None
    except ValueError:
        return None


def documentation_from_oru(
    msg: hl7tree.Message, header: MessageHeader, config: EhrConfig
) -> DocumentationPart | Rejection:
    """ORU^R01 with the profile's minutes OBX. Decision: an ORU with none of them (a lab result)
    is not therapy documentation and is rejected (not_therapy), not silently dropped."""
    problems: list[Problem] = []
    obx = read_obx(msg, config, problems)
    if obx.found == 0 and not problems:
        return Rejection.one(
            RejectReason.NOT_THERAPY,
            "ORU^R01 carries no OBX with a code of the profile's [obx] table: not therapy "
            "documentation",
            header.control_id or None,
            segment="OBX",
            field=3,
        )
    common = common_fields(msg, header, config, problems)
    obr = msg.first("OBR")
    # OBR-3 filler order number identifies the result across corrections (OBX-11 C), else OBR-2.
    result_id = (obr.value(3) or obr.value(2)) if obr else ""
    if not result_id:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD, "OBR-3 and OBR-2 (order numbers) are empty", "OBR", 3
            )
        )
    elif opaque(result_id) is None:
        problems.append(problem(RejectReason.BAD_VALUE, "OBR-3 is not printable ASCII", "OBR", 3))
    dos = None
    if obr is not None and obr.value(7):
        try:
            dos = local_date(obr.value(7), config.profile.zone)  # OBR-7, the clinic's day
        except ValueError:
            problems.append(problem(RejectReason.BAD_VALUE, "OBR-7 is not a date", "OBR", 7))
    visit = _visit(common, dos, problems, "OBR", 7)
    if problems or common is None:
        return Rejection.of(problems, header.control_id or None)
    return _part(
        common,
        f"oru:{result_id}",
        "active",
        config,
        obx=obx,
        date_of_service=dos or _pv1_date(msg, config.profile),
        discipline=department_discipline(msg, [], config.profile)[0],
        visit=visit,
    )


def _part(
    common: Common,
    source_id: str,
    status: str,
    config: EhrConfig,
    *,
    obx: ObxReading | None = None,
    documents: list[Document] | None = None,
    date_of_service: date | None = None,
    discipline: Discipline | None = None,
    signature: Signature | None = None,
    visit: VisitKey | None = None,
) -> DocumentationPart:
    obx = obx or ObxReading()
    return DocumentationPart(
        source="hl7v2",
        message_id=common.message_id,
        version=common.version,
        visit=visit or common.visit,
        patient_ref=common.patient_ref,
        source_id=source_id[:128],
        status="cancelled" if status == "cancelled" else "active",
        date_of_service=date_of_service,
        discipline=discipline,
        author_npi=signature.npi if signature else None,
        author_credential=signature.credential if signature else None,
        minutes_by_cpt=obx.minutes_by_cpt,
        assistant_minutes_by_cpt=obx.assistant_by_cpt,
        total_timed_minutes=obx.total_timed,
        total_treatment_minutes=obx.total_treatment,
        documents=documents or [],
        episode_start_date=obx.episode_start,
    )
