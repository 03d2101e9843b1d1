"""Synthetic HL7 v2.5.1 therapy traffic for the demo sender and the tests: per visit a DFT^P03
(charges) and an MDM^T02 (the signed note with minutes), some visits deliberately flawed. Pure and
seeded: the same seed gives the same bytes. Everything is synthetic: patients are
`SYNTHETIC^PATIENTnnnn` with `SYN` MRNs; NPIs are random numbers with a valid check digit.

Shapes follow ehr_ncci.md sections 1-2 and docs/integration-hl7.md: FT1-25 CPT (C4), FT1-26
modifiers (GP/GO/GN HCPCS, 59 CPTM), FT1-10 units, FT1-20 rendering NPI (XCN.13 `NPI`), PR1-7
minutes; TXA-2 the profile's local types, TXA-17 LA/AU with a TXA-22 signer and PPN.15 time; OBX
minutes per CPT (`TC-CPT-MIN`, OBX-4 the code) and totals (`TC-TIMED-MIN`, `TC-TREAT-MIN`).

The intended mix: about 70% of visits clean, the rest with one flaw each (`FLAW_RULES`: the flaw
and the rule its visit raises once converted and checked, nothing else). Every visit has a
patient of its own (unless `patients` asks for a pool), so no rule spanning a patient's visits
(same date of service, an episode opened by an evaluation) judges two of them together. No KX:
each patient's amount stays far under the yearly threshold, and the HL7 path carries no
amounts (FT1 prices are not read), so a KX there could only be judged premature.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from compliance.npi import with_check_digit
from compliance.units import cms_split, units_for_minutes
from ehr.profile import DEFAULT_PROFILE_PATH, PayerEntry, Profile, load_profile

FACILITY = "SYNCLINIC"
SENDER = "SYNEMR"
TIMED = {
    "PT": ["97110", "97112", "97116", "97140", "97530"],
    "OT": ["97530", "97535", "97110", "97112", "97140"],
}
EVALUATIONS = {"PT": ["97161", "97162", "97163"], "OT": ["97165", "97166", "97167"]}
SLP_CODES = ["92507", "92526"]
DESCRIPTION = {
    "97110": "Therapeutic exercise",
    "97112": "Neuromuscular reeducation",
    "97116": "Gait training",
    "97140": "Manual therapy",
    "97530": "Therapeutic activities",
    "97535": "Self care management training",
    "97161": "PT evaluation low complexity",
    "97162": "PT evaluation moderate complexity",
    "97163": "PT evaluation high complexity",
    "97165": "OT evaluation low complexity",
    "97166": "OT evaluation moderate complexity",
    "97167": "OT evaluation high complexity",
    "92507": "Speech hearing therapy",
    "92526": "Oral function therapy",
}
MODIFIER = {"PT": "GP", "OT": "GO", "SLP": "GN"}
DEPARTMENT = {"PT": "PT", "OT": "OT", "SLP": "ST"}
DEGREE = {"PT": "DPT", "OT": "OTR/L", "SLP": "CCC-SLP"}
DOC_PREFIX = {"PT": "PT", "OT": "OT", "SLP": "ST"}
#: IN1-2 plan id (CE.1), text, IN1-3 company id, and the payer the demo profile maps it to.
PAYERS: list[tuple[str, str, str, str, str, int]] = [
    ("MCB", "Medicare Part B", "CMS", "MEDICARE-B", "medicare", 60),
    ("SYNPPO", "Synthetic Health PPO", "SYNHEALTH", "SYN-PPO", "commercial", 25),
    ("SYNHMO", "Synthetic Health HMO", "SYNHEALTH", "SYN-HMO", "commercial", 15),
]
#: Each flaw and the rules its visit raises. A corrected DFT's first version is joined and
#: checked before the correction arrives (its note is in by then), so it raises the alert of its
#: extra unit: on a timed code (TIMED_UNITS_EXCEED_MINUTES) or, on an SLP visit (untimed codes
#: only), a second unit of its untimed code (`resent_correction_untimed`).
FLAW_RULES: dict[str, frozenset[str]] = {
    "units_over": frozenset({"TIMED_UNITS_EXCEED_MINUTES"}),
    "minutes_missing": frozenset({"TIMED_MINUTES_MISSING"}),
    "no_documentation": frozenset({"DOCUMENTATION_NOT_RECEIVED"}),
    "resent_correction": frozenset({"TIMED_UNITS_EXCEED_MINUTES"}),
    "resent_correction_untimed": frozenset({"UNTIMED_CODE_MULTIPLE_UNITS"}),
}
FLAWS = ("units_over", "minutes_missing", "no_documentation", "resent_correction")
SLP_FLAWS = ("no_documentation", "resent_correction_untimed")
RESENT = ("resent_correction", "resent_correction_untimed")

Kind = Literal["charges", "documentation"]


@dataclass(frozen=True, slots=True)
class Line:
    cpt: str
    units: int
    modifiers: tuple[str, ...]
    #: PR1-7 procedure minutes when the DFT carries a PR1 for the line.
    pr1_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class Hl7Message:
    """One message and what it is meant to say (for tests and the demo's summary)."""

    raw: bytes
    control_id: str
    kind: Kind
    visit: str
    #: "clean", or the visit's flaw (FLAW_RULES); "<flaw>:first" for a superseded DFT.
    intent: str
    #: Charges: the billed lines. Documentation: none.
    lines: tuple[Line, ...] = ()
    #: Documentation: minutes per CPT, totals, TXA-2 type, signed (TXA-17 LA/AU + TXA-22).
    minutes_by_cpt: dict[str, int] = field(default_factory=dict)
    total_timed_minutes: int | None = None
    total_treatment_minutes: int | None = None
    document_type: str = ""
    payer_kind: str = ""


@dataclass
class _Visit:
    number: str
    patient: tuple[str, str, str, str]  # MRN, family, given, birth date
    utf8: bool
    discipline: str
    payer: tuple[str, str, str, str, str, int]
    provider: tuple[str, str, str]  # NPI, family, given
    referrer: tuple[str, str, str]
    start: datetime
    minutes: dict[str, int]  # timed code -> minutes
    untimed: list[str]
    flaw: str


def demo_profile_text(shipped: str | None = None) -> str:
    """The shipped profile file with the demo's commercial plans added under `[payers]`: the
    edit an integration engineer makes for their own senders' IN1-2 plan codes (HL7 table 0072
    is user-defined, so no shipped table can know them). `ops/demo --hl7` points the gateway and
    the worker at this text (`therapy-compliance demo-hl7 --print-profile`, TC_EHR_PROFILE)."""
    text = DEFAULT_PROFILE_PATH.read_text(encoding="utf-8") if shipped is None else shipped
    header = "[payers]\n"
    if header not in text:
        raise ValueError("the profile has no [payers] table to add the demo's plans to")
    added = "".join(
        f'{plan} = {{ payer_id = "{payer_id}", kind = "{kind}" }}  # {name} (demo)\n'
        for plan, name, _company, payer_id, kind, _w in PAYERS
        if kind != "medicare"  # the shipped table maps the Medicare plans already
    )
    return text.replace(header, header + added, 1)


def demo_profile(base: Profile | None = None) -> Profile:
    """The shipped profile plus the demo's commercial payers (it maps only Medicare)."""
    profile = base or load_profile()
    payers = dict(profile.payers)
    for plan, _text, _company, payer_id, kind, _w in PAYERS:
        payers.setdefault(plan, PayerEntry.model_validate({"payer_id": payer_id, "kind": kind}))
    return profile.model_copy(update={"payers": payers})


class Hl7VisitGenerator:
    def __init__(
        self,
        seed: int = 7,
        flawed_share: float = 0.3,
        patients: int | None = None,
        start: date = date(2026, 3, 2),
    ) -> None:
        """`patients`: None, a new patient for every visit (module doc); a number, visits drawn
        from a pool of that many patients (the rules spanning visits then see them together)."""
        self.rng = random.Random(seed)
        self.seed = seed
        self.flawed_share = flawed_share
        self.start = start
        self.counter = 0
        self.messages_made = 0
        self.mrns: set[str] = set()
        self.pool = [self._patient(i) for i in range(patients)] if patients is not None else None
        self.providers = {
            d: [self._person("THERAPIST", f"{d}{i}") for i in range(4)] for d in MODIFIER
        }
        self.referrers = [self._person("PHYSICIAN", f"MD{i}") for i in range(6)]

    def _patient(self, number: int) -> tuple[str, str, str, str]:
        rng = self.rng
        mrn = f"SYN{rng.randrange(10**6, 10**7)}"
        while mrn in self.mrns:
            mrn = f"SYN{rng.randrange(10**6, 10**7)}"
        self.mrns.add(mrn)
        birth = f"{rng.randrange(1935, 2005)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        return mrn, "SYNTHETIC", f"PATIENT{number:04d}", birth

    def _person(self, family: str, given: str) -> tuple[str, str, str]:
        base = f"1{self.rng.randrange(10**7, 10**8)}"
        return with_check_digit(base), f"SYN{family}", given

    # ---- public ------------------------------------------------------------------------------

    def visits(self, count: int) -> Iterator[list[Hl7Message]]:
        """The messages of each visit, in the order a sender would send them."""
        for _ in range(count):
            yield self._messages(self._visit())

    def messages(self, count: int) -> Iterator[Hl7Message]:
        for batch in self.visits(count):
            yield from batch

    # ---- one visit ---------------------------------------------------------------------------

    def _visit(self) -> _Visit:
        rng = self.rng
        self.counter += 1
        discipline = rng.choices(["PT", "OT", "SLP"], [55, 30, 15])[0]
        payer = rng.choices(PAYERS, [p[5] for p in PAYERS])[0]
        day = self.start + timedelta(days=rng.randrange(0, 60))
        start = datetime(day.year, day.month, day.day, 8) + timedelta(
            minutes=5 * rng.randrange(0, 100)
        )
        minutes: dict[str, int] = {}
        untimed: list[str] = []
        if discipline == "SLP":
            untimed = [rng.choice(SLP_CODES)]
        else:
            if rng.random() < 0.12:
                untimed = [rng.choice(EVALUATIONS[discipline])]
            for code in rng.sample(TIMED[discipline], rng.choice([1, 2, 2, 3])):
                minutes[code] = rng.choice(
                    [rng.randrange(8, 16), rng.randrange(15, 40), rng.randrange(4, 8)]
                )
            first = next(iter(minutes))
            minutes[first] = max(minutes[first], rng.randrange(8, 40))  # something is billed
        flaws = FLAWS if discipline != "SLP" else SLP_FLAWS
        flaw = rng.choice(flaws) if rng.random() < self.flawed_share else "clean"
        return _Visit(
            number=f"SV{self.seed % 1000:03d}{self.counter:07d}",
            patient=rng.choice(self.pool) if self.pool else self._patient(self.counter),
            utf8=rng.random() < 0.1,
            discipline=discipline,
            payer=payer,
            provider=rng.choice(self.providers[discipline]),
            referrer=rng.choice(self.referrers),
            start=start,
            minutes=minutes,
            untimed=untimed,
            flaw=flaw,
        )

    def _lines(self, v: _Visit) -> list[Line]:
        """The billed lines; PR1-7 minutes on about half the DFTs."""
        mod = MODIFIER[v.discipline]
        lines = [Line(c, 1, (mod,)) for c in v.untimed]
        if v.minutes:
            if v.payer[4] == "medicare":  # CMS 8-minute rule: pooled minutes (Pub. 100-04 20.2)
                units = cms_split(v.minutes).allocations(limit=1)[0]
            else:  # AMA/CPT midpoint rule, per code
                units = {c: units_for_minutes(m) for c, m in v.minutes.items()}
            with_pr1 = self.rng.random() < 0.5
            for code, mins in v.minutes.items():
                if units[code] == 0:
                    continue  # not billed; the note still documents the minutes
                # NCCI pairs 97530/97140 (modifier indicator 1): 59 on the column-two code.
                mods = (mod, "59") if code == "97140" and "97530" in units else (mod,)
                lines.append(Line(code, units[code], mods, mins if with_pr1 else None))
        return lines

    def _messages(self, v: _Visit) -> list[Hl7Message]:
        lines = self._lines(v)
        unstated = None
        if v.flaw == "minutes_missing":
            # A billed timed code whose minutes the note leaves out, and the DFT too (its PR1-7
            # would stand in for them: the join takes a charge's minutes when the note has none).
            unstated = self.rng.choice(sorted(ln.cpt for ln in lines if ln.cpt in v.minutes))
            lines = [
                Line(ln.cpt, ln.units, ln.modifiers) if ln.cpt == unstated else ln for ln in lines
            ]
        wrong = list(lines)
        if v.flaw in ("units_over", *RESENT):
            timed = [i for i, ln in enumerate(wrong) if ln.cpt in v.minutes]
            i = self.rng.choice(timed or list(range(len(wrong))))
            wrong[i] = Line(
                wrong[i].cpt, wrong[i].units + 1, wrong[i].modifiers, wrong[i].pr1_minutes
            )
        resent = v.flaw in RESENT
        first_intent = f"{v.flaw}:first" if resent else v.flaw
        out = [self._dft(v, wrong if v.flaw != "clean" else lines, first_intent, 0)]
        if v.flaw != "no_documentation":
            doc = self._mdm(v, unstated)
            out.insert(self.rng.randrange(2), doc)  # the note may arrive before the charges
        if resent:
            out.append(self._dft(v, lines, v.flaw, 90))
        return out

    # ---- segments ----------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self.messages_made += 1
        return f"{prefix}{self.seed % 1000:03d}{self.messages_made:07d}"

    def _header(self, v: _Visit, kind: str, at: datetime, control_id: str) -> list[str]:
        mrn, family, given, birth = v.patient
        if v.utf8:
            family = "SYNTHÉTIQUE"  # non-ASCII, declared in MSH-18
        msh = f"MSH|^~\\&|{SENDER}|{FACILITY}|TC|BILLING|{_ts(at)}||{kind}|{control_id}|P|2.5.1" + (
            "||||||UNICODE UTF-8" if v.utf8 else ""
        )
        dept = DEPARTMENT[v.discipline]
        return [
            msh,
            f"EVN|{kind.split('^')[1]}|{_ts(at)}",
            f"PID|1||{mrn}^^^{FACILITY}^MR||{family}^{given}||{birth}|U",
            _seg(
                "PV1",
                {
                    1: "1",
                    2: "O",
                    3: f"{dept}^^^{FACILITY}",
                    10: dept,
                    19: f"{v.number}^^^{FACILITY}^VN",
                },
            ),
        ]

    def _dft(self, v: _Visit, lines: list[Line], intent: str, later_min: int) -> Hl7Message:
        at = v.start + timedelta(hours=6, minutes=later_min)
        cid = self._next_id("DFT")
        segs = self._header(v, "DFT^P03^DFT_P03", at, cid)
        npi, fam, giv = v.provider
        rnpi, rfam, rgiv = v.referrer
        t = v.start
        for n, line in enumerate(lines, start=1):
            mins = v.minutes.get(line.cpt, 30)
            end = t + timedelta(minutes=mins)
            ce = f"{line.cpt}^{DESCRIPTION[line.cpt]}^C4"
            mods = "~".join(f"{m}^^{'CPTM' if m.isdigit() else 'HCPCS'}" for m in line.modifiers)
            segs.append(
                _seg(
                    "FT1",
                    {
                        1: str(n),
                        2: f"{cid}-{n}",
                        4: f"{_ts(t)}^{_ts(end)}",
                        5: _ts(at),
                        6: "CG",
                        7: ce,
                        10: str(line.units),
                        11: f"{38.5 * line.units:.2f}&USD",
                        16: f"{DEPARTMENT[v.discipline]}^^^{FACILITY}",
                        19: "M54.50^Low back pain^I10",
                        20: f"{npi}^{fam}^{giv}^^^^{DEGREE[v.discipline]}^^^^^^NPI",
                        21: f"{rnpi}^{rfam}^{rgiv}^^^^MD^^^^^^NPI",
                        25: ce,
                        26: mods,
                    },
                )
            )
            if line.pr1_minutes is not None:
                segs.append(f"PR1|1||{ce}||{_ts(t)}||{line.pr1_minutes}")
            t = end
        plan, text, company, _pid, kind, _w = v.payer
        segs.append("DG1|1||M54.50^Low back pain^I10|||F")
        segs.append(f"IN1|1|{plan}^{text}^L|{company}^^^{company}^NIIP|{text}")
        return Hl7Message(
            _encode(segs, v.utf8),
            cid,
            "charges",
            f"{FACILITY}:{v.number}",
            intent,
            lines=tuple(lines),
            payer_kind=kind,
        )

    def _mdm(self, v: _Visit, unstated: str | None) -> Hl7Message:
        rng = self.rng
        at = v.start + timedelta(hours=rng.randrange(2, 9))
        cid = self._next_id("MDM")
        segs = self._header(v, "MDM^T02^MDM_T02", at, cid)
        npi, fam, giv = v.provider
        evaluation = v.discipline != "SLP" and bool(v.untimed)
        doc_type = DOC_PREFIX[v.discipline] + ("EVAL" if evaluation else "DAILY")
        status = rng.choice(["LA", "LA", "AU"])
        signed = at - timedelta(minutes=rng.randrange(5, 60))
        person = f"{npi}^{fam}^{giv}^^^^{DEGREE[v.discipline]}^^^^^^NPI"
        segs.append(
            _seg(
                "TXA",
                {
                    1: "1",
                    2: doc_type,
                    3: "TX",
                    4: _ts(v.start),
                    6: _ts(signed - timedelta(minutes=5)),
                    9: person,
                    12: f"DOC-{v.number}",
                    17: status,
                    19: "AV",
                    22: f"{person}^^{_ts(signed)}",
                },
            )
        )
        segs.append("OBX|1|TX|NOTE^Daily note^L||Synthetic note: tolerated treatment well.||||||F")
        minutes = {c: m for c, m in v.minutes.items() if c != unstated}
        n = 1
        for code, mins in minutes.items():
            n += 1
            segs.append(
                f"OBX|{n}|NM|TC-CPT-MIN^Minutes by procedure^L|{code}|{mins}|min^minute^UCUM|||||F"
            )
        timed = sum(v.minutes.values())
        untimed_minutes = 30 * len(v.untimed)
        treatment = timed + untimed_minutes + rng.randrange(0, 10)
        if timed:
            n += 1
            segs.append(
                f"OBX|{n}|NM|TC-TIMED-MIN^Total timed minutes^L||{timed}|min^minute^UCUM|||||F"
            )
        segs.append(
            f"OBX|{n + 1}|NM|TC-TREAT-MIN^Total treatment minutes^L||{treatment}|min^minute^UCUM|||||F"
        )
        return Hl7Message(
            _encode(segs, v.utf8),
            cid,
            "documentation",
            f"{FACILITY}:{v.number}",
            v.flaw,
            minutes_by_cpt=minutes,
            total_timed_minutes=timed or None,
            total_treatment_minutes=treatment,
            document_type=doc_type,
            payer_kind=v.payer[4],
        )


def _seg(name: str, fields: dict[int, str]) -> str:
    return "|".join([name, *(fields.get(i, "") for i in range(1, max(fields) + 1))])


def _ts(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


def _encode(segments: list[str], utf8: bool) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8" if utf8 else "ascii")
