"""DFT^P03 (HL7 v2.5.1 ch. 6.4.3) -> ChargePart: the profile's reading of FT1, PR1, PV1 and IN1.

Field sources (ehr_ncci.md 1.2): FT1-4 date of service (DR, component 1), FT1-6 transaction type
(table 0017), FT1-25 procedure code (CE, table 0088) else FT1-7 transaction code when it is a
CPT/HCPCS code, FT1-10 quantity = units, FT1-26 modifiers (CE, repeating), FT1-20 performed by
(XCN: NPI, degree), FT1-13 department; PR1-7 procedure minutes in the line's PROCEDURE group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, tzinfo

from pydantic import ValidationError

from ehr import hl7tree
from ehr.codes import DISCIPLINE_MODIFIERS, modifier, procedure_code
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
from ehr.hl7time import local_date
from ehr.parts import AnyPart, ChargeLine, ChargePart, CreditLine, CreditPart
from ehr.profile import EhrConfig, Profile
from ehr.rejection import Problem, Rejection, RejectReason, shown
from schemas.common import Credential, Discipline
from schemas.visit import Payer

#: Segments that close a FINANCIAL group (DFT_P03: ... FINANCIAL+, DG1*, DRG, GT1*, INSURANCE*,
#: ACC), so a PR1 after them is not the line's procedure.
_AFTER_FINANCIAL = frozenset({"DG1", "DRG", "GT1", "IN1", "IN2", "IN3", "ACC"})
MAX_UNITS = 96


@dataclass
class LineReading:
    """What one FT1 (with its FINANCIAL group) says, before the visit-level checks."""

    index: int
    set_id: str = ""
    transaction_type: str = ""
    skipped: bool = False
    cpt: str | None = None
    units: int | None = None
    modifiers: list[str] = field(default_factory=list)
    minutes: int | None = None
    date_of_service_text: str = ""
    npi: str | None = None
    credential: Credential | None = None
    department: str = ""
    transaction_id: str | None = None
    credit: bool = False
    #: FT1-31 Transaction Reference Key of a credit: the FT1-2 of the charge it reverses.
    reference: str | None = None
    problems: list[Problem] = field(default_factory=list)


def financial_groups(msg: hl7tree.Message) -> list[list[hl7tree.Segment]]:
    """Each FT1 with the segments of its FINANCIAL group (NTE, PR1, ROL, ORC, OBR, OBX ...)."""
    groups: list[list[hl7tree.Segment]] = []
    for seg in msg.segments:
        if seg.name == "FT1":
            groups.append([seg])
        elif seg.name in _AFTER_FINANCIAL:
            if groups and groups[-1][0].name == "FT1":
                groups.append([seg])  # a sentinel: closes the last group
        elif groups and groups[-1][0].name == "FT1":
            groups[-1].append(seg)
    return [g for g in groups if g[0].name == "FT1"]


def pr1_sequences(msg: hl7tree.Message, groups: list[list[hl7tree.Segment]]) -> list[int]:
    """Each group's first PR1 (the one read): its sequence among the message's PR1 segments, the
    ERR-2 ERL.2 Segment Sequence (HL7 v2.5.1 ch. 2.15.5.2) of a problem found in it; 0 for a
    group without a PR1."""
    pr1s = [s for s in msg.segments if s.name == "PR1"]
    firsts = [next((s for s in g if s.name == "PR1"), None) for g in groups]
    return [next((n for n, s in enumerate(pr1s, 1) if s is f), 0) for f in firsts]


def read_line(
    group: list[hl7tree.Segment], index: int, profile: Profile, pr1_sequence: int = 0
) -> LineReading:
    """One FT1 (the `index`th of the message) with its FINANCIAL group; `pr1_sequence` locates
    a problem in its PR1 (`pr1_sequences`; 0 = unknown, reported without a sequence)."""
    ft1 = group[0]
    line = LineReading(index=index, set_id=ft1.value(1))

    def bad(reason: RejectReason, detail: str, fld: int) -> None:
        line.problems.append(problem(reason, f"FT1#{index}: {detail}", "FT1", fld, index))

    line.transaction_type = ft1.value(6).upper()
    tx = profile.transactions
    if line.transaction_type in tx.ignored:
        line.skipped = True
        return line
    if not line.transaction_type:
        bad(RejectReason.MISSING_FIELD, "FT1-6 (transaction type) is empty", 6)
    elif line.transaction_type in tx.credit:
        line.credit = True  # table 0017 CD: reverses charged units (ehr/credits.py)
    elif line.transaction_type not in tx.charge:
        bad(
            RejectReason.BAD_VALUE,
            f"FT1-6 {shown(line.transaction_type)} is not a charge, credit or ignored type "
            "(profile [transactions], HL7 table 0017)",
            6,
        )

    line.cpt = line_cpt(ft1)
    if line.cpt is None:
        bad(RejectReason.NO_PROCEDURE_CODE, "FT1-25 and FT1-7 hold no CPT/HCPCS code", 25)

    quantity = ft1.value(10)
    if line.credit and quantity.startswith("-"):
        # Some senders sign a credit's quantity; FT1-6 CD already says it is taken off.
        quantity = quantity[1:]
    low = 1 if line.credit else 0
    line.units = integer(quantity, low, MAX_UNITS) if quantity else None
    if not quantity:
        bad(RejectReason.MISSING_FIELD, "FT1-10 (transaction quantity = units) is empty", 10)
    elif line.units is None:
        bad(RejectReason.BAD_VALUE, f"FT1-10 is not a whole number of units {low}-{MAX_UNITS}", 10)

    # The line's PROCEDURE group: its first PR1 is the one read (modifiers, minutes).
    pr1 = next((s for s in group if s.name == "PR1"), None)
    _read_modifiers(ft1, pr1, line, pr1_sequence)
    if line.credit and ft1.value(31):
        line.reference = opaque(ft1.value(31))
        if line.reference is None:
            bad(RejectReason.BAD_VALUE, "FT1-31 is not printable ASCII", 31)

    line.date_of_service_text = ft1.value(4, 1)
    if not line.date_of_service_text:
        bad(RejectReason.MISSING_FIELD, "FT1-4 (transaction date = date of service) is empty", 4)

    for rep in ft1.reps(20):
        npi = npi_of(rep, 13)
        if npi is not None:
            line.npi = npi
            line.credential = credential_of(rep, 7, profile)
            break
    line.department = ft1.value(13)
    line.transaction_id = opaque(ft1.value(2)) if ft1.value(2) else None
    line.minutes = _pr1_minutes(pr1, index, line.problems, pr1_sequence)
    return line


def _read_modifiers(
    ft1: hl7tree.Segment, pr1: hl7tree.Segment | None, line: LineReading, pr1_sequence: int
) -> None:
    # FT1-26 Procedure Code Modifier (CE, repeating, table 0340) first, then PR1-16 (the same
    # field in the line's PROCEDURE group, HL7 v2.5.1 ch. 6.5.4.16): read when FT1-26 is empty,
    # merged without duplicates otherwise. Any bad repetition is refused, wherever it sits.
    sources = [(ft1, 26), *([(pr1, 16)] if pr1 is not None else [])]
    for seg, fld in sources:
        for n, rep in enumerate(seg.reps(fld), start=1):
            code = modifier(hl7tree.leaf(rep))
            if code is None:
                detail = f"FT1#{line.index}: {seg.name}-{fld} repetition {n} is not a two-character modifier"
                # ERL.2: the segment's own occurrence in the message (FT1#n, the line's PR1).
                at = line.index if seg.name == "FT1" else (pr1_sequence or None)
                line.problems.append(problem(RejectReason.BAD_VALUE, detail, seg.name, fld, at))
            elif code not in line.modifiers:
                line.modifiers.append(code)
    if len(line.modifiers) > 4:
        detail = f"FT1#{line.index}: FT1-26 and PR1-16 give more than 4 modifiers"
        line.problems.append(problem(RejectReason.BAD_VALUE, detail, "FT1", 26, line.index))


def line_cpt(ft1: hl7tree.Segment) -> str | None:
    """FT1-25 (CE.1, or the CE.4 alternate when CE.6 names CPT/HCPCS), else FT1-7 the same way,
    only when the value is shaped like a CPT/HCPCS code: a price or an ICD code never is."""
    for fld in (25, 7):
        code = procedure_code(ft1.value(fld, 1), ft1.value(fld, 3))
        if code is None and ft1.value(fld, 6):
            code = procedure_code(ft1.value(fld, 4), ft1.value(fld, 6))
        if code is not None:
            return code
    return None


def _pr1_minutes(
    pr1: hl7tree.Segment | None, index: int, problems: list[Problem], pr1_sequence: int
) -> int | None:
    # PR1-7 procedure minutes (NM) is the one field the standard defines for minutes
    # (ehr_ncci.md 1.3); the first PR1 of the line's PROCEDURE group counts.
    if pr1 is None or not pr1.value(7):
        return None
    minutes = integer(pr1.value(7), 0, 1440)
    if minutes is None:
        detail = f"FT1#{index}: PR1-7 (procedure minutes) is not a whole number 0-1440"
        problems.append(problem(RejectReason.BAD_VALUE, detail, "PR1", 7, pr1_sequence or None))
    return minutes


def charges_from_dft(
    msg: hl7tree.Message, header: MessageHeader, config: EhrConfig
) -> list[AnyPart] | Rejection:
    """One part, or for a recurring account (PV1-2 in `recurring_patient_classes`, HL7 table
    0004 `R`) one charge part per FT1-4 date, each keyed `<PV1-19>@<date>` (a credit DFT is
    always one date's: `_credit_parts`; docs/integration-hl7.md)."""
    profile = config.profile
    problems: list[Problem] = []
    common = common_fields(msg, header, config, problems)
    groups_of = financial_groups(msg)
    readings = [
        read_line(g, i, profile, pr1)
        for i, (g, pr1) in enumerate(zip(groups_of, pr1_sequences(msg, groups_of), strict=True), 1)
    ]
    for reading in readings:
        problems += reading.problems
    lines = [r for r in readings if not r.skipped]
    if not readings:
        problems.append(problem(RejectReason.MISSING_FIELD, "no FT1 segment", "FT1"))
    elif not lines:
        problems.append(
            problem(RejectReason.NOT_A_VISIT, "every FT1-6 is a payment or adjustment type", "FT1")
        )
    credits = [r for r in lines if r.credit]
    if credits and len(credits) < len(lines):
        # A DFT of charges is the visit's full set (it replaces the earlier one); credits are
        # taken off the stored charges. One message cannot be both.
        problems.append(
            problem(
                RejectReason.UNSUPPORTED_TRANSACTION,
                "FT1-6: the DFT mixes charges and credits (HL7 table 0017 CG and CD): send the "
                "visit's corrected charges as a new DFT (it replaces the earlier one), or the "
                "credits in a DFT of their own",
                "FT1",
                6,
                credits[0].index,
            )
        )
    date_problems: list[Problem] = []
    days = _days(lines, date_problems, config.profile.zone)
    recurring = common is not None and common.recurring
    groups = list(days.values()) if recurring and days else [lines]
    if credits:
        return _credit_parts(common, days, problems + date_problems, header)
    payer = None
    per_day: list[tuple[Discipline | None, str | None, Credential | None]] = []
    for n, group in enumerate(groups):
        # One discipline and one rendering provider per visit: per day for a recurring account.
        discipline = _discipline(msg, group, profile, problems)
        if n == 0:
            payer = _payer(msg, profile, problems)  # IN1 is the message's, for every day
        npi, credential = _provider(group, profile, problems)
        per_day.append((discipline, npi, credential))
    if len(days) > 1 and not recurring:
        date_problems.append(
            problem(
                RejectReason.BAD_VALUE,
                "FT1-4 dates differ between lines: one visit has one date of service (only a "
                "recurring account, PV1-2 in the profile's recurring_patient_classes, is split "
                "into one visit per date)",
                "FT1",
                4,
            )
        )
    problems = _distinct(problems + date_problems)
    if problems:
        return Rejection.of(problems, header.control_id or None)
    assert common is not None and payer is not None
    parts: list[AnyPart] = []
    try:
        for (day, group), (discipline, npi, credential) in zip(
            days.items() if recurring else [next(iter(days.items()))], per_day, strict=True
        ):
            assert discipline is not None and npi is not None
            parts.append(
                ChargePart(
                    source="hl7v2",
                    message_id=common.message_id,
                    version=common.version,
                    visit=common.visit.on(day) if recurring else common.visit,
                    patient_ref=common.patient_ref,
                    date_of_service=day,
                    discipline=discipline,
                    payer=payer,
                    rendering_npi=npi,
                    rendering_credential=credential,
                    lines=[
                        _charge_line(r, ids) for r, ids in zip(group, _line_ids(group), strict=True)
                    ],
                )
            )
    except (ValidationError, ValueError) as exc:
        detail = f"the charges do not form a valid visit part ({_first_error(exc)})"
        return Rejection.one(RejectReason.BAD_VALUE, detail, header.control_id or None)
    return parts


def _credit_parts(
    common: Common | None,
    days: dict[date, list[LineReading]],
    problems: list[Problem],
    header: MessageHeader,
) -> list[AnyPart] | Rejection:
    """A DFT of credits: one CreditPart, for the one visit it credits. Its lines share one FT1-4
    date, also for a recurring account: the join applies a credit message whole or not at all
    (one visit, one join record), so one message never half-applies over several days' visits
    and a re-send never credits a day twice (docs/integration-hl7.md "Credits")."""
    if common is not None and len(days) > 1:
        detail = (
            "FT1-4 dates differ between the credit lines of a recurring account: a credit "
            "message is applied whole or not at all, to one day's visit; send one credit message "
            "(DFT) per day"
            if common.recurring
            else "FT1-4 dates differ between credit lines: one visit has one date of service"
        )
        problems.append(problem(RejectReason.BAD_VALUE, detail, "FT1", 4))
    problems = _distinct(problems)
    if problems:
        return Rejection.of(problems, header.control_id or None)
    assert common is not None
    parts: list[AnyPart] = []
    try:
        for day, group in days.items():
            parts.append(
                CreditPart(
                    source="hl7v2",
                    message_id=common.message_id,
                    version=common.version,
                    visit=common.visit.on(day) if common.recurring else common.visit,
                    patient_ref=common.patient_ref,
                    date_of_service=day,
                    lines=[_credit_line(r) for r in group],
                )
            )
    except (ValidationError, ValueError) as exc:
        detail = f"the credits do not form a valid part ({_first_error(exc)})"
        return Rejection.one(RejectReason.BAD_VALUE, detail, header.control_id or None)
    return parts


def _credit_line(r: LineReading) -> CreditLine:
    assert r.cpt is not None and r.units is not None
    return CreditLine(
        cpt=r.cpt,
        units=r.units,
        modifiers=r.modifiers,
        reference=r.reference,
        transaction_id=r.transaction_id,
        position=r.index,
    )


def _distinct(problems: list[Problem]) -> list[Problem]:
    # A problem found on each day of a recurring account is reported once.
    return list(dict.fromkeys(problems))


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return "invalid value"


def _line_ids(lines: list[LineReading]) -> list[str]:
    ids = [r.set_id for r in lines]
    if all(ids) and len(set(ids)) == len(ids) and all(opaque(i) for i in ids):
        return ids  # FT1-1 set ids, when usable as the contract's line_id
    return [str(n) for n in range(1, len(lines) + 1)]


def _charge_line(r: LineReading, line_id: str) -> ChargeLine:
    assert r.cpt is not None and r.units is not None
    return ChargeLine(
        line_id=line_id,
        cpt=r.cpt,
        units=r.units,
        modifiers=r.modifiers,
        minutes=r.minutes,
        transaction_id=r.transaction_id,
    )


def _discipline(
    msg: hl7tree.Message, lines: list[LineReading], profile: Profile, problems: list[Problem]
) -> Discipline | None:
    # GP/GO/GN (CMS Pub. 100-04, Ch. 5, sec. 20.1) decide; else the department table.
    found = {
        DISCIPLINE_MODIFIERS[m] for r in lines for m in r.modifiers if m in DISCIPLINE_MODIFIERS
    }
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        problems.append(
            problem(
                RejectReason.BAD_VALUE,
                "lines carry modifiers of more than one discipline (GP/GO/GN): one visit has one "
                "discipline",
                "FT1",
                26,
            )
        )
        return None
    discipline, code = department_discipline(msg, [r.department for r in lines], profile)
    if discipline is None:
        seen = (
            f"department {shown(code)} is not in the profile's [departments]"
            if code
            else ("no department code is sent (FT1-13, PV1-3, PV1-10)")
        )
        problems.append(
            problem(
                RejectReason.NOT_THERAPY,
                f"no line carries a GP/GO/GN modifier and {seen}: not a therapy charge",
                "FT1",
                13,
            )
        )
    return discipline


def _payer(msg: hl7tree.Message, profile: Profile, problems: list[Problem]) -> Payer | None:
    # First IN1 (the primary insurance): IN1-2 insurance plan id (CE.1), else IN1-3 company id.
    in1 = msg.first("IN1")
    keys = [k for k in ((in1.value(2), in1.value(3)) if in1 else ()) if k]
    for key in keys:
        entry = profile.payers.get(key.upper()) or profile.payers.get(key)
        if entry is not None:
            return Payer(payer_id=entry.payer_id, kind=entry.kind, unit_rule=entry.unit_rule)
    if profile.default_payer is not None:
        d = profile.default_payer
        return Payer(payer_id=d.payer_id, kind=d.kind, unit_rule=d.unit_rule)
    if not keys:
        problems.append(
            problem(
                RejectReason.MISSING_FIELD,
                "no IN1 segment with IN1-2 or IN1-3: the payer is required",
                "IN1",
                2,
            )
        )
    else:
        problems.append(
            problem(
                RejectReason.UNMAPPED_CODE,
                f"IN1-2/IN1-3 {', '.join(shown(k) for k in keys)} not in the profile's [payers]",
                "IN1",
                2,
            )
        )
    return None


def _provider(
    lines: list[LineReading], profile: Profile, problems: list[Problem]
) -> tuple[str | None, Credential | None]:
    # FT1-20 performed by (XCN.1 NPI). One visit has one rendering provider.
    npis = {r.npi for r in lines if r.npi}
    if len(npis) > 1:
        problems.append(
            problem(
                RejectReason.BAD_VALUE,
                "FT1-20 names different NPIs on different lines: one visit has one rendering "
                "provider",
                "FT1",
                20,
            )
        )
        return None, None
    if not npis:
        if lines:
            problems.append(
                problem(
                    RejectReason.MISSING_FIELD,
                    "FT1-20 (performed by) carries no NPI (XCN.1, ten digits; XCN.13 NPI)",
                    "FT1",
                    20,
                )
            )
        return None, None
    npi = npis.pop()
    credential = next((r.credential for r in lines if r.credential), None)
    return npi, credential or profile.providers.get(npi)


def _days(
    lines: list[LineReading], problems: list[Problem], zone: tzinfo
) -> dict[date, list[LineReading]]:
    """The lines by date of service (FT1-4 DR component 1), in order of first appearance; a DTM
    with a time and an offset is dated on the clinic's clock (`local_date`)."""
    days: dict[date, list[LineReading]] = {}
    for r in lines:
        if not r.date_of_service_text:
            continue
        try:
            day = local_date(r.date_of_service_text, zone)
        except ValueError:
            problems.append(
                problem(
                    RejectReason.BAD_VALUE,
                    f"FT1#{r.index}: FT1-4 is not a date (YYYYMMDD...)",
                    "FT1",
                    4,
                    r.index,
                )
            )
            continue
        days.setdefault(day, []).append(r)
    return days
