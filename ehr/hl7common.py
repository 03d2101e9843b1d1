"""What charges and documentation messages share: visit key (MSH-4 + PV1-19), patient_ref (PID-3),
version (MSH-7 + MSH-10), provider ids, departments, numbers. Each reader appends `Problem`s
instead of raising, so one rejection can list everything wrong with a message."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ehr import hl7tree
from ehr.hl7header import MessageHeader
from ehr.hl7time import to_utc
from ehr.parts import PartVersion, VisitKey
from ehr.patient import hashed_visit_number, patient_ref
from ehr.profile import EhrConfig, Profile
from ehr.rejection import Problem, RejectReason, shown
from schemas.common import Credential, Discipline

_OPAQUE = re.compile(r"^[\x20-\x7E]{1,120}$")
_NPI = re.compile(r"^\d{10}$")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
#: A visit number's room in the 128-character key when `@YYYY-MM-DD` is appended (VisitKey.on).
_MAX_ACCOUNT = 128 - 11


@dataclass(frozen=True, slots=True)
class Common:
    visit: VisitKey
    patient_ref: str
    version: PartVersion
    message_id: str
    #: PV1-2 is one of the profile's recurring patient classes (HL7 table 0004 `R`): `visit` is
    #: the account; each date of service is a visit of its own (`visit.on(day)`).
    recurring: bool = False


def problem(
    reason: RejectReason,
    detail: str,
    segment: str,
    field: int | None = None,
    sequence: int | None = 1,
) -> Problem:
    return Problem(reason=reason, detail=detail, segment=segment, sequence=sequence, field=field)


def common_fields(
    msg: hl7tree.Message, header: MessageHeader, config: EhrConfig, problems: list[Problem]
) -> Common | None:
    """Visit key, patient_ref and version, or None with problems appended."""
    start = len(problems)
    facility = header.sending_facility
    if not facility:
        problems.append(
            problem(RejectReason.MISSING_FIELD, "MSH-4 (sending facility) is empty", "MSH", 4)
        )
    elif not _OPAQUE.match(facility):
        problems.append(problem(RejectReason.BAD_VALUE, "MSH-4 is not printable ASCII", "MSH", 4))
    visit_number = _visit_number(msg, problems)
    ref = _patient(msg, config.patient_key, problems)
    version = _version(msg, header, problems)
    if len(problems) > start or version is None or ref is None or visit_number is None:
        return None
    if config.profile.visit_id == "hashed":
        visit_number = hashed_visit_number(config.patient_key, facility, visit_number)
    pv1 = msg.first("PV1")
    patient_class = pv1.value(2).upper() if pv1 is not None else ""
    recurring = patient_class in {c.upper() for c in config.profile.recurring_patient_classes}
    if recurring and len(visit_number) > _MAX_ACCOUNT:
        problems.append(
            problem(
                RejectReason.BAD_VALUE,
                f"PV1-19 is longer than {_MAX_ACCOUNT} characters: a recurring account's visit "
                "key adds its date of service",
                "PV1",
                19,
            )
        )
        return None
    return Common(
        visit=VisitKey(facility=facility, visit_number=visit_number),
        patient_ref=ref,
        version=version,
        message_id=header.control_id,
        recurring=recurring,
    )


def _version(
    msg: hl7tree.Message, header: MessageHeader, problems: list[Problem]
) -> PartVersion | None:
    # MSH-7 (message date/time) + MSH-10 (control id) order the versions of a part: a re-sent or
    # corrected message for the same visit or document replaces an older one (ehr/join.py).
    ok = True
    if header.time is None:
        written = msg.segments[0].value(7)
        reason = RejectReason.BAD_VALUE if written else RejectReason.MISSING_FIELD
        problems.append(
            problem(reason, "MSH-7 (date/time of message) is not a valid DTM", "MSH", 7)
        )
        ok = False
    if not header.control_id:
        problems.append(
            problem(RejectReason.MISSING_FIELD, "MSH-10 (message control id) is empty", "MSH", 10)
        )
        ok = False
    elif not _OPAQUE.match(header.control_id):
        problems.append(problem(RejectReason.BAD_VALUE, "MSH-10 is not printable ASCII", "MSH", 10))
        ok = False
    if not ok or header.time is None:
        return None
    return PartVersion(at=to_utc(header.time), control_id=header.control_id)


def _visit_number(msg: hl7tree.Message, problems: list[Problem]) -> str | None:
    # PV1 is optional in DFT^P03 2.5.1 but this profile requires it: PV1-19 (visit number, CX.1)
    # is the encounter key that joins charges to documentation (ehr_ncci.md 1.1, 1.3).
    pv1 = msg.first("PV1")
    if pv1 is None:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD,
                "PV1 segment is missing: PV1-19 (visit number) is the visit key",
                "PV1",
                19,
            )
        )
        return None
    number = pv1.value(19)
    if not number:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD,
                "PV1-19 (visit number) is empty: it is the visit key",
                "PV1",
                19,
            )
        )
        return None
    if not _OPAQUE.match(number):
        problems.append(problem(RejectReason.BAD_VALUE, "PV1-19 is not printable ASCII", "PV1", 19))
        return None
    return number


def _patient(msg: hl7tree.Message, key: bytes, problems: list[Problem]) -> str | None:
    # PID-3 first repetition: CX.1 identifier + CX.4 assigning authority (HD, subcomponents
    # joined). Nothing from PID may appear in a detail: only field names.
    pid = msg.first("PID")
    if pid is None:
        problems.append(problem(RejectReason.MISSING_FIELD, "PID segment is missing", "PID", 3))
        return None
    reps = pid.reps(3)
    identifier = hl7tree.leaf(reps[0]) if reps else ""
    if not identifier:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD,
                "PID-3 (patient identifier list) has no identifier in its first repetition",
                "PID",
                3,
            )
        )
        return None
    authority = reps[0][3] if len(reps[0]) > 3 else ()
    return patient_ref(key, identifier, "&".join(s.strip() for s in authority))


def npi_of(rep: hl7tree.Comps, id_type_comp: int) -> str | None:
    """An XCN/PPN repetition's ID (component 1) if it is an NPI: ten digits, and the identifier
    type code (XCN.13 / PPN.13, HL7 table 0203) empty or NPI."""
    ident = hl7tree.leaf(rep, 1)
    id_type = hl7tree.leaf(rep, id_type_comp).upper()
    if _NPI.match(ident) and id_type in ("", "NPI"):
        return ident
    return None


def credential_of(rep: hl7tree.Comps, degree_comp: int, profile: Profile) -> Credential | None:
    """XCN.7 / PPN.7 degree (deprecated in 2.5 but still how senders send it) via the aliases."""
    return profile.credential(hl7tree.leaf(rep, degree_comp))


def department_discipline(
    msg: hl7tree.Message, codes: list[str], profile: Profile
) -> tuple[Discipline | None, str]:
    """First department code that is sent, looked up in [departments]: (discipline, code seen)."""
    pv1 = msg.first("PV1")
    candidates = [*codes]
    if pv1 is not None:
        candidates += [pv1.value(3), pv1.value(10)]  # PV1-3 PL.1 point of care, PV1-10 service
    for code in candidates:
        if code:
            return profile.departments.get(code.upper()), code
    return None, ""


def integer(text: str, low: int, high: int) -> int | None:
    """An NM value that is a whole number within [low, high] ('2', '2.0', '+2'); else None."""
    if not _NUMBER.match(text):
        return None
    value = float(text)
    if not value.is_integer() or not low <= value <= high:
        return None
    return int(value)


def opaque(text: str) -> str | None:
    return text if _OPAQUE.match(text) else None


__all__ = ["Common", "common_fields", "problem", "shown"]
