"""Realistic synthetic therapy visits for the demo feed and the benchmarks. Seeded, no I/O.

Two generators, each yielding `Record`s whose `intent` says what the engine should find:

- `VisitGenerator` (mode "visits"): independent visits. The mix: PT 55%, OT 30%, SLP 15%;
  Medicare 45%, Medicare Advantage 15%, Medicaid 10%, commercial 25%, workers' comp 5%; about
  70% of visits billed and documented correctly, the rest carry one flaw each (`FLAW_RULES`: the
  flaw and the one rule it raises), and `malformed_share` of records are not valid events.
- `EpisodeGenerator` (mode "episodes"): patients followed through episodes of care, in date
  order (see its docstring; `EPISODE_FLAWS`), with later information that resolves alerts
  (corrected visits, delayed certifications: `Record.releases`).

`generator(mode, ...)` builds either. Fixed mode (the default) puts the dates where `start` says,
reproducibly; live mode (`live=True`) gives the same records moved so that their dates end on
the clock's date (`clock`, injectable: the machine's local time by default), every date the
generator writes (dates of service and the dates inside documents) moved by the same number of
days, and events occurring at the clock's time (the demo's event-age metric). So live and fixed
mode raise the same alerts for the same seed, moved by that shift; where the shift crosses a
date a rule depends on, the intents follow the moved dates (a year without a KX threshold gets
no KX; before the referral exception's start an episode has a signed certification).
`expected_rules(mode, intent)` is what a record's intent should raise.

Every id is synthetic and opaque: no names, MRNs or dates of birth; every rendering NPI passes
the NPI check digit (Luhn with the 80840 prefix).
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import orjson

from compliance.findings import SEVERITY, RuleId
from compliance.npi import with_check_digit
from compliance.units import cms_split, cms_total_units, units_for_minutes
from schemas.common import Severity

#: The live mode's clock: an aware datetime; its date is the day the live dates end.
Clock = Callable[[], datetime]


def local_now() -> datetime:
    """The default clock: now, in the machine's time zone (its date is the local today)."""
    return datetime.now().astimezone()


TIMED = {
    "PT": ["97110", "97112", "97116", "97140", "97530", "97035", "97032"],
    "OT": ["97530", "97535", "97110", "97112", "97140", "97760", "97763", "97542"],
    "SLP": ["97129", "97130"],
}
UNTIMED = {
    "PT": ["97161", "97162", "97163", "97164", "97010", "97014", "97150"],
    "OT": ["97165", "97166", "97167", "97168", "97010", "97150"],
    "SLP": ["92507", "92526", "92523", "92610", "92508"],
}
#: The evaluation codes a visit may bill (UNTIMED[...][:4]) and their deleted predecessors.
DELETED_EVALUATION = {
    "97161": "97001", "97162": "97001", "97163": "97001", "97164": "97002",
    "97165": "97003", "97166": "97003", "97167": "97003", "97168": "97004",
}  # fmt: skip
MODIFIER = {"PT": "GP", "OT": "GO", "SLP": "GN"}
CREDENTIAL = {"PT": ["PT", "PTA"], "OT": ["OT", "OTA"], "SLP": ["SLP"]}
PAYERS = [
    ("medicare", "MEDICARE-B", 45),
    ("medicare_advantage", "MA-PLAN-7", 15),
    ("medicaid", "MEDICAID-STATE", 10),
    ("commercial", "COMM-PPO-3", 25),
    ("workers_comp", "WC-CARRIER-2", 5),
]
#: The visit feed's flaws (one per flawed visit) and the rule each raises, and nothing else
#: (a visit is judged alone: every visit has its own patient). A flaw that cannot be made on a
#: visit becomes the one that can, and the record says so: units over, units under or minutes
#: missing on a visit with no (billed) timed line (SLP) is a second unit of its untimed code.
FLAW_RULES: dict[str, frozenset[str]] = {
    "units_over": frozenset({"TIMED_UNITS_EXCEED_MINUTES"}),
    "units_under": frozenset({"TIMED_UNITS_BELOW_MINUTES"}),
    "misallocated": frozenset({"TIMED_UNITS_MISALLOCATED"}),
    "minutes_missing": frozenset({"TIMED_MINUTES_MISSING"}),
    "total_mismatch": frozenset({"TOTAL_TIMED_MINUTES_MISMATCH"}),
    "treatment_missing": frozenset({"TREATMENT_TIME_INCONSISTENT"}),
    "report_missing": frozenset({"WRITTEN_REPORT_MISSING"}),
    "deleted_code": frozenset({"CODE_NOT_VALID_ON_DATE"}),
    "untimed_units": frozenset({"UNTIMED_CODE_MULTIPLE_UNITS"}),
    "modifier_missing": frozenset({"THERAPY_MODIFIER_MISSING"}),
    "unknown_code": frozenset({"UNKNOWN_CODE"}),
}
FLAWS = list(FLAW_RULES)
MALFORMED = [
    "invalid_json",
    "truncated",
    "wrong_type",
    "missing_field",
    "bad_version",
    "negative_minutes",
    "not_object",
]


@dataclass(frozen=True, slots=True)
class Release:
    """A visit a record is meant to release from hold (EVENTS.md "VisitStatus v1"): sent, the
    record resolves the visit's alerts of `rules`, and no error is left open on it, so its
    status goes from `hold` to `to` ("ready", or "review" when a warning stays open)."""

    patient_ref: str
    visit_id: str
    rules: frozenset[str]
    to: str


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    #: "clean", a flaw name, or "malformed:<kind>" - what the generator meant, for tests/benches.
    intent: str
    #: The visits this record is meant to release from hold (its own when it is a correction,
    #: earlier ones of its episode when it carries a delayed certification); the demo compares
    #: them with the status topic.
    releases: tuple[Release, ...] = ()


class VisitGenerator:
    """Independent visits (module doc). Fixed mode spreads the dates of service over `SPAN_DAYS`
    days from `start`; live mode moves that window to end on the clock's date and stamps
    `occurred_at` with the clock's time (visits completed just now: the event-age metric means
    something), drawing the same random numbers as fixed mode.

    `patients`: None (the default) gives every visit a patient of its own, so no rule that spans
    a patient's visits (same date of service, an episode opened by an evaluation) judges two of
    them together and each flaw raises exactly its rule. A number draws the visits' patients
    from a pool that size (a bounded key space, as the benchmarks' state may want); patients
    then recur and those rules may raise what `FLAW_RULES` does not describe."""

    SPAN_DAYS = 60

    def __init__(
        self,
        seed: int = 7,
        clean_share: float = 0.7,
        malformed_share: float = 0.02,
        patients: int | None = None,
        start: date = date(2026, 3, 2),
        live: bool = False,
        clock: Clock = local_now,
    ) -> None:
        self.rng = random.Random(seed)
        self.clean_share = clean_share
        self.malformed_share = malformed_share
        self.pool = (
            [f"P-{self.rng.getrandbits(32):08x}" for _ in range(patients)]
            if patients is not None
            else None
        )
        self.seen_patients: set[str] = set()
        self.start = start
        self.counter = 0
        self.live = live
        self.clock = clock

    def records(self, count: int | None = None) -> Iterator[Record]:
        n = 0
        while count is None or n < count:
            n += 1
            yield self.record()

    def record(self) -> Record:
        visit = self.visit()
        key = visit["patient_ref"].encode()
        if self.rng.random() < self.malformed_share:
            kind = self.rng.choice(MALFORMED)
            return Record(key, _malform(kind, visit), f"malformed:{kind}")
        if self.rng.random() < self.clean_share:
            return Record(key, orjson.dumps(visit), "clean")
        flaw = self.rng.choice(FLAWS)
        made = _FLAW[flaw](self, visit)
        return Record(key, orjson.dumps(visit), made)

    def shift(self, now: datetime) -> timedelta:
        """Live mode: how far the fixed window's dates move to end on `now`'s date."""
        return now.date() - (self.start + timedelta(days=self.SPAN_DAYS - 1))

    def visit(self) -> dict[str, Any]:
        rng = self.rng
        self.counter += 1
        discipline = rng.choices(["PT", "OT", "SLP"], [55, 30, 15])[0]
        kind, payer_id, _ = rng.choices(PAYERS, [w for *_, w in PAYERS])[0]
        dos = self.start + timedelta(days=rng.randrange(0, self.SPAN_DAYS))
        # The treatment's time on its date (UTC); the note is signed an hour later.
        treated = datetime(dos.year, dos.month, dos.day, 14, tzinfo=UTC) + timedelta(
            minutes=rng.randrange(0, 400)
        )
        occurred = treated
        if self.live:
            now = self.clock()
            shift = self.shift(now)
            dos, treated = dos + shift, treated + shift
            occurred = now.astimezone(UTC).replace(microsecond=0)
        cms = kind in ("medicare", "medicare_advantage", "medicaid")
        services, timed_total = self._services(discipline, cms)
        untimed_minutes = sum(s.pop("_untimed_minutes", 0) for s in services)
        return {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "visit_id": f"V-{self.counter:09d}",
            "patient_ref": self._patient(),
            "date_of_service": dos.isoformat(),
            "discipline": discipline,
            "payer": {"payer_id": payer_id, "kind": kind},
            "rendering_provider": {
                "npi": npi(rng),
                "credential": CREDENTIAL[discipline][0],
            },
            "services": services,
            "total_timed_minutes": timed_total,
            "total_treatment_minutes": timed_total + untimed_minutes + rng.randrange(0, 15),
            "documents": [
                {
                    "doc_id": f"D-{self.counter}",
                    "kind": "daily_note",
                    "signed_at": (treated + timedelta(hours=1)).isoformat(),
                    "author_credential": CREDENTIAL[discipline][0],
                }
            ],
        }

    def _patient(self) -> str:
        if self.pool is not None:
            return self.rng.choice(self.pool)
        patient = f"P-{self.rng.getrandbits(40):010x}"
        while patient in self.seen_patients:
            patient = f"P-{self.rng.getrandbits(40):010x}"
        self.seen_patients.add(patient)
        return patient

    def _services(self, discipline: str, cms: bool) -> tuple[list[dict[str, Any]], int]:
        rng = self.rng
        mod = MODIFIER[discipline]
        services: list[dict[str, Any]] = []
        if discipline == "SLP":
            codes = rng.sample(UNTIMED["SLP"][:2], 1)
            for c in codes:
                services.append(
                    {
                        "line_id": str(len(services) + 1),
                        "cpt": c,
                        "units": 1,
                        "modifiers": [mod],
                        "_untimed_minutes": rng.randrange(20, 45),
                    }
                )
            return services, 0
        timed_codes = rng.sample(TIMED[discipline][:5], rng.choice([1, 2, 2, 3, 3, 4]))
        minutes = {
            c: rng.choice([rng.randrange(8, 16), rng.randrange(15, 40), rng.randrange(3, 8)])
            for c in timed_codes
        }
        minutes[timed_codes[0]] = rng.randrange(8, 40)  # something is always billed
        if rng.random() < 0.15:
            code = rng.choice(UNTIMED[discipline][:4] if discipline != "SLP" else UNTIMED["SLP"])
            services.append(
                {
                    "line_id": "1",
                    "cpt": code,
                    "units": 1,
                    "modifiers": [mod],
                    "_untimed_minutes": rng.randrange(20, 50),
                }
            )
        if cms:
            alloc = cms_split(minutes).allocations(limit=1)[0]
        else:
            alloc = {c: units_for_minutes(m) for c, m in minutes.items()}
        for c in timed_codes:
            services.append(
                {
                    "line_id": str(len(services) + 1),
                    "cpt": c,
                    "units": alloc[c],
                    "minutes": minutes[c],
                    "modifiers": [mod],
                }
            )
        return services, sum(minutes.values())


def npi(rng: random.Random) -> str:
    """A synthetic NPI (starting with 1) with a valid check digit (compliance/npi.py). One rng
    draw, as before."""
    return with_check_digit("1" + f"{rng.randrange(10**8, 10**9):09d}"[1:])


def _timed_lines(v: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in v["services"] if "minutes" in s]


def _next_line_id(v: dict[str, Any]) -> str:
    return str(max((int(s["line_id"]) for s in v["services"]), default=0) + 1)


def _cms(v: dict[str, Any]) -> bool:
    return bool(v["payer"]["kind"] in ("medicare", "medicare_advantage", "medicaid"))


# Each flaw edits the visit and returns the flaw it made (FLAW_RULES).


def _units_over(g: VisitGenerator, v: dict[str, Any]) -> str:
    lines = _timed_lines(v)
    if not lines:  # SLP: untimed codes only
        return _untimed_units(g, v)
    g.rng.choice(lines)["units"] += 1
    return "units_over"


def _units_under(g: VisitGenerator, v: dict[str, Any]) -> str:
    billed = [s for s in _timed_lines(v) if s["units"] > 0]
    if not billed:
        return _untimed_units(g, v)
    g.rng.choice(billed)["units"] -= 1
    return "units_under"


def _misallocated(g: VisitGenerator, v: dict[str, Any]) -> str:
    v["payer"] = {"payer_id": "MEDICARE-B", "kind": "medicare"}
    v["services"] = [s for s in v["services"] if "minutes" not in s]
    base = len(v["services"])
    v["services"] += [
        {
            "line_id": str(base + 1),
            "cpt": "97110",
            "units": 3,
            "minutes": 33,
            "modifiers": [MODIFIER[v["discipline"]]],
        },
        {
            "line_id": str(base + 2),
            "cpt": "97140",
            "units": 0,
            "minutes": 7,
            "modifiers": [MODIFIER[v["discipline"]]],
        },
    ]
    v["total_treatment_minutes"] += 40 - (v["total_timed_minutes"] or 0)
    v["total_timed_minutes"] = 40
    return "misallocated"


def _minutes_missing(g: VisitGenerator, v: dict[str, Any]) -> str:
    lines = [s for s in _timed_lines(v) if s["units"] > 0]
    if not lines:
        return _untimed_units(g, v)
    del g.rng.choice(lines)["minutes"]
    return "minutes_missing"


def _total_mismatch(g: VisitGenerator, v: dict[str, Any]) -> str:
    if g.rng.random() < 0.5 and _timed_lines(v):
        del v["total_timed_minutes"]
        return "total_mismatch"
    total = v["total_timed_minutes"] or 0
    off = g.rng.randrange(1, 5)
    # Under the CMS rule the pooled units are judged on the documented total: keep it in the
    # same unit band (bands are 15 minutes wide, so one direction always does), so that the
    # mismatch is the only finding.
    if _cms(v) and _timed_lines(v) and cms_total_units(total + off) != cms_total_units(total):
        off = -off
    v["total_timed_minutes"] = total + off
    v["total_treatment_minutes"] += 5
    return "total_mismatch"


def _treatment_missing(g: VisitGenerator, v: dict[str, Any]) -> str:
    if g.rng.random() < 0.5 or not v["total_timed_minutes"]:
        del v["total_treatment_minutes"]
    else:
        v["total_treatment_minutes"] = max(0, (v["total_timed_minutes"] or 0) - 5)
    return "treatment_missing"


def _report_missing(g: VisitGenerator, v: dict[str, Any]) -> str:
    # A test-and-measure visit, not an evaluation: 97750 is not separately reportable with an
    # evaluation on the same date (NCCI Policy Manual Ch. XI sec. P.8).
    v["services"] = [s for s in v["services"] if s["cpt"] not in DELETED_EVALUATION]
    v["services"].append(
        {
            "line_id": _next_line_id(v),
            "cpt": "97750",
            "units": 1,
            "minutes": 15,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )
    v["total_timed_minutes"] = (v["total_timed_minutes"] or 0) + 15
    v["total_treatment_minutes"] += 15
    if _cms(v):
        # Keep the CMS split valid so the report is the visit's only flaw.
        minutes: dict[str, int] = {}
        for s in _timed_lines(v):
            minutes[s["cpt"]] = minutes.get(s["cpt"], 0) + s["minutes"]
        alloc = cms_split(minutes).allocations(limit=1)[0]
        for s in _timed_lines(v):
            s["units"] = alloc[s["cpt"]]
            alloc[s["cpt"]] = 0
    return "report_missing"


def _deleted_code(g: VisitGenerator, v: dict[str, Any]) -> str:
    # The evaluation billed under its deleted code (one evaluation: NCCI sec. P.1 allows one).
    for s in v["services"]:
        if s["cpt"] in DELETED_EVALUATION:
            s["cpt"] = DELETED_EVALUATION[s["cpt"]]
            return "deleted_code"
    old = {"PT": "97001", "OT": "97003", "SLP": "92506"}[v["discipline"]]
    v["services"].append(
        {
            "line_id": _next_line_id(v),
            "cpt": old,
            "units": 1,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )
    return "deleted_code"


def _untimed_units(g: VisitGenerator, v: dict[str, Any]) -> str:
    # A second unit of the visit's untimed code, else of an evaluation billed with two units
    # (not a second evaluation: EVALUATION_DUPLICATE).
    untimed = [s for s in v["services"] if "minutes" not in s and s["units"] > 0]
    if untimed:
        untimed[0]["units"] = 2
        return "untimed_units"
    v["services"].append(
        {
            "line_id": _next_line_id(v),
            "cpt": UNTIMED[v["discipline"]][0],
            "units": 2,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )
    return "untimed_units"


def _modifier_missing(g: VisitGenerator, v: dict[str, Any]) -> str:
    v["payer"] = {"payer_id": "MEDICARE-B", "kind": "medicare"}
    # Re-apply the CMS split: the visit may have been billed under the AMA rule.
    minutes = {s["cpt"]: s["minutes"] for s in _timed_lines(v)}
    if minutes:
        alloc = cms_split(minutes).allocations(limit=1)[0]
        for s in _timed_lines(v):
            s["units"] = alloc[s["cpt"]]
    billed = [s for s in v["services"] if s["units"] > 0]
    if billed:
        g.rng.choice(billed)["modifiers"] = []
    else:
        v["services"].append(
            {
                "line_id": _next_line_id(v),
                "cpt": UNTIMED[v["discipline"]][0],
                "units": 1,
                "modifiers": [],
            }
        )
    return "modifier_missing"


def _unknown_code(g: VisitGenerator, v: dict[str, Any]) -> str:
    v["services"].append(
        {
            "line_id": _next_line_id(v),
            "cpt": "98975",  # remote therapeutic monitoring set-up: billed by PTs, not a catalog code
            "units": 1,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )
    return "unknown_code"


_FLAW: dict[str, Callable[[VisitGenerator, dict[str, Any]], str]] = {
    "units_over": _units_over,
    "units_under": _units_under,
    "misallocated": _misallocated,
    "minutes_missing": _minutes_missing,
    "total_mismatch": _total_mismatch,
    "treatment_missing": _treatment_missing,
    "report_missing": _report_missing,
    "deleted_code": _deleted_code,
    "untimed_units": _untimed_units,
    "modifier_missing": _modifier_missing,
    "unknown_code": _unknown_code,
}


def _malform(kind: str, visit: dict[str, Any]) -> bytes:
    if kind == "invalid_json":
        return b"{visit: not json"
    if kind == "truncated":
        return orjson.dumps(visit)[:40]
    if kind == "wrong_type":
        visit["services"][0]["units"] = "two"
    elif kind == "missing_field":
        del visit["visit_id"]
    elif kind == "bad_version":
        visit["schema_version"] = 2
    elif kind == "negative_minutes":
        visit["total_timed_minutes"] = -10
    elif kind == "not_object":
        return b"[1, 2, 3]"
    return orjson.dumps(visit)


# --- episodes of care ---------------------------------------------------------------------------

#: Episode flaws and the rule ids a visit carrying the flaw raises (nothing else episode- or
#: KX-related may fire on it). "start_unseen": the episode's first visits were never sent, so
#: the episode rules are not evaluated for it (EVENTS.md).
#:
#: The rules are what the visit's event raises when it is checked: what the alert topic (an
#: append-only log) receives once. Two flaws are later resolved by the feed itself, which the
#: status topic shows (EVENTS.md "VisitStatus v1"; `Record.releases` names the visits):
#: - "delayed_cert": past day 30 with no certification on file when the visit is checked; a
#:   later visit of the episode carries the certification, signed with the reason for its delay
#:   (Pub. 100-02 Ch. 15 sec. 220.1.3 D), whose interval covers this visit: it resolves the
#:   alert (no new alert; a late certification without a reason, "late_cert", resolves nothing);
#: - "corrected_units": the visit's first event bills one timed unit more than its minutes
#:   support; its "correction", re-sent later in the feed (same `visit_id`, a new `event_id`,
#:   the units right), raises nothing and resolves the first event's alert.
EPISODE_FLAWS: dict[str, frozenset[str]] = {
    "late_report": frozenset({"PROGRESS_REPORT_OVERDUE"}),
    "assistant_report": frozenset({"PROGRESS_REPORT_OVERDUE", "PROGRESS_REPORT_BY_ASSISTANT"}),
    "no_plan": frozenset({"PLAN_OF_CARE_MISSING"}),
    "late_cert": frozenset({"CERTIFICATION_MISSING"}),
    "delayed_cert": frozenset({"CERTIFICATION_MISSING"}),
    "no_recert": frozenset({"RECERTIFICATION_MISSING"}),
    "kx_missing": frozenset({"KX_MODIFIER_MISSING"}),
    "kx_premature": frozenset({"KX_MODIFIER_PREMATURE"}),
    "corrected_units": frozenset({"TIMED_UNITS_EXCEED_MINUTES"}),
    "correction": frozenset(),
    "start_unseen": frozenset(),
}
EPISODE_RULES = (frozenset().union(*EPISODE_FLAWS.values()) - FLAW_RULES["units_over"]) | {
    "RECERTIFICATION_MISSING"
}

#: Synthetic allowed amounts per unit (USD): plausible, not a fee schedule.
ALLOWED = {
    "97110": "31.05", "97112": "33.10", "97116": "30.07", "97140": "28.42", "97530": "34.37",
    "97535": "33.50", "92507": "95.20", "92526": "102.30", "97161": "104.32", "97162": "104.32",
    "97163": "104.32", "97164": "71.22", "97165": "110.45", "97166": "110.45", "97167": "110.45",
    "97168": "76.10", "92521": "110.10", "92523": "190.50", "92610": "95.60",
}  # fmt: skip
EP_TREATMENTS: dict[str, list[list[tuple[str, int, int | None]]]] = {
    # (code, units, minutes): correct under both the CMS and the AMA unit rules.
    "PT": [
        [("97110", 2, 30), ("97140", 1, 15)],
        [("97112", 2, 30), ("97110", 1, 15)],
        [("97530", 3, 45)],
        [("97116", 1, 15), ("97110", 2, 30)],
    ],
    "OT": [
        [("97530", 2, 30), ("97535", 1, 15)],
        [("97110", 2, 30), ("97530", 1, 15)],
        [("97535", 3, 45)],
    ],
    "SLP": [[("92507", 1, None)], [("92526", 1, None)]],
}
EP_EVALUATIONS = {
    "PT": ["97161", "97162", "97163"],
    "OT": ["97165", "97166", "97167"],
    "SLP": ["92521", "92523", "92610"],
}
EP_RE_EVALUATION = {"PT": "97164", "OT": "97168"}
EP_ASSISTANT = {"PT": "PTA", "OT": "OTA"}
EP_PAYERS = [
    ("medicare", "MEDICARE-B", 55),
    ("medicare_advantage", "MA-PLAN-7", 15),
    ("commercial", "COMM-PPO-3", 20),
    ("medicaid", "MEDICAID-STATE", 10),
]
_MEDICARE_RULES = ("medicare", "medicare_advantage")  # payer kinds following Medicare


@dataclass
class _EpVisit:
    discipline: str
    dos: date
    services: list[dict[str, Any]]
    docs: list[dict[str, Any]] = field(default_factory=list)
    flaws: set[str] = field(default_factory=set)
    emit: bool = True
    #: The episode's reference: a prefix and the episode's first day (written as YYYYMMDD).
    episode_ref: tuple[str, date] | None = None
    patient: str = ""
    kind: str = ""
    payer_id: str = ""
    #: Set when its event is made (feed order).
    visit_id: str = ""
    #: Earlier visits this one resolves a flaw of (the visit and the flaw): a delayed
    #: certification's (`Record.releases`).
    resolves: list[tuple[_EpVisit, str]] = field(default_factory=list)

    def move(self, shift: timedelta) -> None:
        """Every date of the visit by `shift` (live mode): date of service, the documents'
        dates and times, the episode reference's date."""
        self.dos += shift
        self.docs = [{k: _moved(x, shift) for k, x in d.items()} for d in self.docs]
        if self.episode_ref is not None:
            self.episode_ref = (self.episode_ref[0], self.episode_ref[1] + shift)


class EpisodeGenerator:
    """Patients followed through episodes of care (EVENTS.md "v1 additions"), seeded and
    deterministic, yielded in date order as valid TherapyVisitCompleted v1 events (but for the
    corrections, re-sent days after their visit: below).

    Each cohort of `patients` patients spans about five months from its start. A patient has one
    payer (Medicare 55%, Medicare Advantage 15%, commercial 20%, Medicaid 10%) and one to three
    episodes (PT, OT, SLP; a second episode of another discipline may overlap, one of the same
    discipline follows a discharge). An episode: an initial evaluation with a signed plan of care
    (plan dates, sent to the certifier) and sometimes a referral; the physician's certification
    (signed in time, or a verbal order signed within 14 days, or, from 2025, the referral
    exception: an episode starting earlier has a signed certification instead); 2-3 treatment days a week for 3-12 weeks, billed correctly with allowed amounts;
    a progress report by the therapist at least every 9 treatment days, sometimes a
    re-evaluation instead; a recertification before the plan's end when it runs longer; a
    discharge summary on the last visit. Medicare Part B visits carry KX once the patient's
    yearly amount is over the threshold. Flaws (`EPISODE_FLAWS`), set on the visits that must
    raise them: a late progress report, a report only by an assistant, no plan, a late
    certification, no recertification, a missing or premature KX, an episode whose first visits
    are never sent. `Record.intent` is "clean" or the visit's flaws joined by "+".

    Later information the feed itself sends (the status topic shows what it resolves; each
    record's `releases` names the visits it is meant to release from hold):
    - a delayed certification, in `delayed_cert_share` of the Medicare episodes without a flaw
      that have two visits or more after day 30: no certification by day 30, so the first 1-3
      visits after it are held ("delayed_cert", CERTIFICATION_MISSING); the next visit carries
      the physician's certification, signed, with `delay_reason_documented` (Pub. 100-02
      Ch. 15 sec. 220.1.3 D) and an interval from the episode's start through the plan's end
      (day 56-89, within start + 89), which covers them;
    - a corrected visit, for `correction_share` of the visits without a flaw that bill timed
      units: first sent with one unit too many on one line ("corrected_units",
      TIMED_UNITS_EXCEED_MINUTES), re-sent after the visits of 1-7 days later ("correction":
      same `visit_id` and documents, a new `event_id`, the units right).
    Their draws come from a generator of their own (`later_rng`): apart from the episodes and
    visits they change, the feed is the one the same seed gave before them (with both shares
    0, exactly that).

    Live mode moves each cohort so that its last date of service is the clock's date: every
    date (dates of service, the documents' plan, certification, signature and order dates, the
    episode reference's date) by the same number of days, before the KX accrual (by calendar
    year) and the referral exception's start date are applied. A malformed record
    (`malformed_share`) is a broken copy sent before the visit's valid event: dropping the
    visit itself would take its documents out of its episode and raise what no intent says.
    """

    def __init__(
        self,
        seed: int = 7,
        patients: int = 200,
        start: date = date(2026, 1, 5),
        malformed_share: float = 0.0,
        flaw_share: float = 0.35,
        live: bool = False,
        clock: Clock = local_now,
        delayed_cert_share: float = 0.5,
        correction_share: float = 0.02,
    ) -> None:
        self.rng = random.Random(seed)
        #: The draws of the delayed certifications and the corrections, apart from `rng`.
        self.later_rng = random.Random(f"later-information/{seed}")
        self.delayed_cert_share = delayed_cert_share
        self.correction_share = correction_share
        self.patients = patients
        self.start = start
        self.malformed_share = malformed_share
        self.flaw_share = flaw_share
        #: live: each cohort's dates end on the clock's date and events occur at its time.
        self.live = live
        self.clock = clock
        self.counter = 0
        self.cohorts_made = 0
        self.seen_patients: set[str] = set()
        self.thresholds = _kx_thresholds()
        self.referral_from = _referral_exception_from()

    def records(self, count: int | None = None) -> Iterator[Record]:
        n = 0
        while count is None or n < count:
            for rec in self.cohort():
                if count is not None and n >= count:
                    return
                n += 1
                yield rec

    # --- one cohort -----------------------------------------------------------------------

    def cohort(self) -> list[Record]:
        """The next cohort: its patients' visits in date order."""
        rng = self.rng
        base = self.start + timedelta(days=154 * self.cohorts_made)
        self.cohorts_made += 1
        visits: list[_EpVisit] = []
        for _ in range(self.patients):
            patient = f"P-{rng.getrandbits(40):010x}"
            while patient in self.seen_patients:
                patient = f"P-{rng.getrandbits(40):010x}"
            self.seen_patients.add(patient)
            visits += self._patient(patient, base)
        if self.live:
            shift = self.clock().date() - max(v.dos for v in visits)
            for v in visits:
                v.move(shift)
        self._before_referral_exception(visits)
        visits = [v for v in visits if v.emit]
        visits.sort(key=lambda v: (v.dos, v.patient, v.discipline))
        self._kx(visits)
        out: list[Record] = []
        #: Corrections waiting to be re-sent: (after the visits of this date, order, record).
        waiting: list[tuple[date, int, Record]] = []
        last_day = visits[-1].dos if visits else self.start
        for v in visits:
            while waiting and waiting[0][0] < v.dos:
                out.append(waiting.pop(0)[2])
            event = self._event(v)
            v.visit_id = event["visit_id"]
            key = v.patient.encode()
            flaws = set(v.flaws)
            corrected = self._correction(v, event, last_day)
            if corrected is not None:
                first, due, correction = corrected
                flaws.add("corrected_units")
                itself = Release(v.patient, v.visit_id, EPISODE_FLAWS["corrected_units"], "ready")
                bisect.insort(
                    waiting, (due, len(out), Record(key, correction, "correction", (itself,)))
                )
                event = first
            value = orjson.dumps(event)
            if rng.random() < self.malformed_share:
                kind = rng.choice(MALFORMED)
                out.append(Record(key, _malform(kind, orjson.loads(value)), f"malformed:{kind}"))
            intent = "+".join(sorted(flaws)) or "clean"
            out.append(Record(key, value, intent, self._releases(v)))
        out += [rec for *_, rec in waiting]
        return out

    def _correction(
        self, v: _EpVisit, event: dict[str, Any], last_day: date
    ) -> tuple[dict[str, Any], date, bytes] | None:
        """For `correction_share` of the visits without a flaw that bill timed units: the event
        first sent instead (one timed unit more than its minutes support, on one line), the date
        after whose visits the correction is re-sent, and the correction (`event` as made, with
        a new `event_id`). The line's `allowed_amount` stays: it is the amount of the line as
        paid, and it keeps the KX accrual the same before and after the correction."""
        more = self.later_rng
        if more.random() >= self.correction_share:
            return None
        timed = [i for i, s in enumerate(event["services"]) if "minutes" in s and s["units"] > 0]
        if v.flaws or not timed:
            return None
        first = orjson.loads(orjson.dumps(event))
        first["services"][more.choice(timed)]["units"] += 1
        delay = more.randrange(1, 8)
        due = min(v.dos + timedelta(days=delay), last_day)
        later = timedelta(days=(due - v.dos).days, minutes=30 + more.randrange(0, 60))
        occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")) + later
        if self.live:  # (the same draws as fixed mode)
            occurred = self.clock().astimezone(UTC).replace(microsecond=0)
        correction = dict(
            event,
            event_id=str(uuid.UUID(int=more.getrandbits(128), version=4)),
            occurred_at=occurred.isoformat().replace("+00:00", "Z"),
        )
        return first, due, orjson.dumps(correction)

    def _releases(self, v: _EpVisit) -> tuple[Release, ...]:
        """The earlier visits `v`'s documents release from hold: those whose remaining flaws
        (after the one `v` resolves) raise no error."""
        out = []
        for held, flaw in v.resolves:
            assert held.visit_id, "a visit resolved before it was sent"
            left = held.flaws - {flaw}
            to = release_status(expected_rules("episodes", "+".join(sorted(left)) or "clean"))
            if to != "hold":
                out.append(Release(held.patient, held.visit_id, EPISODE_FLAWS[flaw], to))
        return tuple(out)

    def _before_referral_exception(self, visits: list[_EpVisit]) -> None:
        """Before the referral exception's start (episode_policy.toml) a referral does not stand
        for the certification: there the physician certifies the plan at the evaluation."""
        for v in visits:
            if v.dos >= self.referral_from:
                continue
            for i, d in enumerate(v.docs):
                if d["kind"] == "referral":
                    plan = next(p for p in v.docs if p["kind"] == "plan_of_care")
                    v.docs[i] = {
                        "kind": "certification",
                        "author_credential": "MD",
                        "covers_from": plan["plan_start"],
                        "covers_through": plan["plan_end"],
                    }

    def _patient(self, patient: str, base: date) -> list[_EpVisit]:
        rng = self.rng
        kind, payer_id, _ = rng.choices(EP_PAYERS, [w for *_, w in EP_PAYERS])[0]
        discipline = rng.choices(["PT", "OT", "SLP"], [55, 30, 15])[0]
        start = base + timedelta(days=rng.randrange(0, 40))
        out = self._episode(patient, discipline, start, kind, first=True)
        if rng.random() < 0.4:  # another discipline at the same time ...
            other = rng.choice([d for d in ("PT", "OT", "SLP") if d != discipline])
            begin = start + timedelta(days=rng.randrange(1, 20))
            out += self._episode(patient, other, begin, kind, first=True)
        if rng.random() < 0.3:  # ... and/or the same discipline again after the discharge
            last = max(v.dos for v in out if v.discipline == discipline)
            again = last + timedelta(days=rng.randrange(7, 30))
            out += self._episode(patient, discipline, again, kind, first=False)
        for v in out:
            v.docs.insert(
                0, {"kind": "daily_note", "author_credential": discipline_credential(v.discipline)}
            )
            v.patient, v.kind, v.payer_id = patient, kind, payer_id
        return out

    def _episode(
        self, patient: str, discipline: str, start: date, kind: str, first: bool
    ) -> list[_EpVisit]:
        rng = self.rng
        days = (0, 2, 4) if rng.random() < 0.6 else (1, 3)
        weeks = rng.randrange(3, 13)
        monday = start - timedelta(days=start.weekday())
        dates = [start] + [
            monday + timedelta(weeks=w, days=d)
            for w in range(weeks)
            for d in days
            if monday + timedelta(weeks=w, days=d) > start
        ]
        medicare = kind in _MEDICARE_RULES
        flaw = ""
        if rng.random() < self.flaw_share:
            options = ["no_plan"] + (["start_unseen"] if first else [])
            if medicare:
                options += 2 * ["late_report", "late_cert", "no_recert"]
                options += 2 * ["assistant_report"] if discipline in EP_ASSISTANT else []
            else:
                options += ["", ""]  # fewer flaws where only the plan rule applies
            flaw = rng.choice(options)
        ref = (f"EP-{patient[2:]}-{discipline}", start) if rng.random() < 0.3 else None
        cred = discipline_credential(discipline)
        visits = [self._treatment(discipline, d, ref) for d in dates]
        ev = visits[0]
        ev.services = _lines([(rng.choice(EP_EVALUATIONS[discipline]), 1, None)], discipline)
        ev.docs.append({"kind": "evaluation", "author_credential": cred})
        length = (dates[-1] - start).days
        plan_days = rng.randrange(35, 85)
        cert_style = rng.choices(["signed", "verbal", "referral"], [60, 20, 20])[0]
        if flaw in ("no_plan", "late_cert"):
            cert_style = "signed"  # (a referral before the exception's start: see cohort())
        if cert_style == "referral":
            # Keep it within the plan, and the plan within one interval (90 calendar days, the
            # start included: start + 89): no recertification due.
            plan_days = min(89, max(plan_days, length))
        # A delayed certification (class doc), drawn for every episode from the other generator:
        # 1-3 visits after day 30 are held, the next one brings the certification.
        past_30 = _first_on_or_after(dates, start + timedelta(days=31))
        delayed = self.later_rng.random() < self.delayed_cert_share
        delayed = delayed and not flaw and medicare and past_30 + 1 < len(dates)
        if flaw == "late_cert" or delayed:
            plan_days = max(plan_days, 56)  # the recertification comes after the late one
        plan_end = start + timedelta(days=plan_days)
        if flaw != "no_plan":
            ev.docs.append(
                {
                    "kind": "plan_of_care",
                    "author_credential": cred,
                    "plan_start": start,
                    "plan_end": plan_end,
                    "sent_to_certifier_at": _at(start, 19),
                }
            )
        covers = {"covers_from": start, "covers_through": plan_end}
        if delayed:
            # `rng` draws what the style it replaces would have, and goes on as without it.
            if cert_style == "verbal":
                rng.randrange(3, 20)
            elif cert_style == "signed":
                rng.randrange(2, 25)
            cert_style = "signed"
            i = min(past_30 + self.later_rng.randrange(1, 4), len(dates) - 1)
            visits[i].docs.append(
                {
                    "kind": "certification",
                    "author_credential": "MD",
                    "delay_reason_documented": True,
                    **covers,
                }
            )
            for v in visits[past_30:i]:
                v.flaws.add("delayed_cert")
                visits[i].resolves.append((v, "delayed_cert"))
        elif cert_style == "referral":
            ev.docs.append(
                {"kind": "referral", "author_credential": "MD", "discipline": discipline}
            )
        elif cert_style == "verbal":
            i = _first_on_or_after(dates, start + timedelta(days=rng.randrange(3, 20)))
            if i + 1 < len(dates):
                v_day = dates[i]
                visits[i].docs.append(
                    {
                        "kind": "certification",
                        "author_credential": "MD",
                        "verbal_order_at": _at(v_day, 15),
                        "signed": None,
                        **covers,
                    }
                )
                visits[i + 1].docs.append(
                    {
                        "kind": "certification",
                        "author_credential": "MD",
                        "verbal_order_at": _at(v_day, 15),
                        **covers,
                    }
                )
        else:
            late = flaw == "late_cert" and length > 45
            when = start + timedelta(days=rng.randrange(34, 42) if late else rng.randrange(2, 25))
            i = _first_on_or_after(dates, when)
            if i < len(dates):
                visits[i].docs.append(
                    {"kind": "certification", "author_credential": "MD", **covers}
                )
                if late:
                    for v in visits[:i]:
                        if (v.dos - start).days > 30:
                            v.flaws.add("late_cert")
        if length > plan_days and cert_style != "referral":
            if flaw != "no_recert":
                i = _first_on_or_after(dates, plan_end - timedelta(days=10))
                recert = {
                    "covers_from": plan_end + timedelta(days=1),
                    "covers_through": plan_end + timedelta(days=60),
                }
                visits[i].docs.append(
                    {"kind": "certification", "author_credential": "MD", **recert}
                )
            else:
                for v in visits:
                    if v.dos > plan_end:
                        v.flaws.add("no_recert")
        self._reports(visits, discipline, flaw)
        visits[-1].docs.append({"kind": "discharge_summary", "author_credential": cred})
        if flaw == "no_plan":
            for v in visits[1:]:
                if v.services[0]["cpt"] not in EP_RE_EVALUATION.values():
                    v.flaws.add("no_plan")
        if flaw == "start_unseen":
            hidden = rng.randrange(1, 5)
            for i, v in enumerate(visits):
                v.flaws = {"start_unseen"}
                v.emit = i >= hidden
        return visits

    def _reports(self, visits: list[_EpVisit], discipline: str, flaw: str) -> None:
        """A report every 9 treatment days (sec. 220.3 D: at least every 10), sometimes a
        re-evaluation instead. For a late or assistant-only report, one period runs to day
        12-14: its days 11.. before the report are overdue (the last visit's discharge summary
        covers its own day)."""
        rng = self.rng
        cred = discipline_credential(discipline)
        late = flaw if flaw in ("late_report", "assistant_report") else ""
        flawed = rng.randrange(0, 2) if late else -1  # which period is late
        period, day = 0, 0
        due = rng.randrange(12, 15) if period == flawed else 9
        for i, v in enumerate(visits):
            day += 1  # one visit per date and discipline: every visit is a treatment day
            last = i == len(visits) - 1
            if period == flawed:
                if late == "assistant_report" and day == 9:
                    assistant = EP_ASSISTANT[discipline]
                    v.docs.append({"kind": "progress_report", "author_credential": assistant})
                if 11 <= day < due and not last:
                    v.flaws.add(late)
            if day == due and not last:
                if (
                    period != flawed
                    and i > 0
                    and discipline in EP_RE_EVALUATION
                    and rng.random() < 0.2
                ):
                    v.services = _lines([(EP_RE_EVALUATION[discipline], 1, None)], discipline)
                    v.docs.append({"kind": "re_evaluation", "author_credential": cred})
                else:
                    v.docs.append({"kind": "progress_report", "author_credential": cred})
                period, day = period + 1, 0
                due = rng.randrange(12, 15) if period == flawed else 9

    def _treatment(self, discipline: str, dos: date, ref: tuple[str, date] | None) -> _EpVisit:
        combo = self.rng.choice(EP_TREATMENTS[discipline])
        return _EpVisit(discipline, dos, _lines(combo, discipline), episode_ref=ref)

    # --- KX over the emitted visits, in feed order -------------------------------------------

    def _kx(self, visits: list[_EpVisit]) -> None:
        """Medicare Part B visits accrue per patient, year and bucket (PT+SLP, OT), this visit
        included; KX goes on every line of a visit once the accrual exceeds the year's threshold.
        Flaws: KX left off one visit over it; KX on an early visit (accrual under half of it)."""
        rng = self.rng
        accrued: dict[tuple[str, int, str], int] = {}
        premature_done: set[tuple[str, int, str]] = set()
        missing_done: set[tuple[str, int, str]] = set()
        for v in visits:
            if v.kind != "medicare":
                continue
            bucket = "OT" if v.discipline == "OT" else "PT_SLP"
            key = (v.patient, v.dos.year, bucket)
            cents = sum(_cents(s["allowed_amount"]) for s in v.services)
            accrued[key] = accrued.get(key, 0) + cents
            threshold = self.thresholds.get((v.dos.year, bucket))
            if threshold is None:
                continue
            kx = accrued[key] > threshold
            if kx and key not in missing_done and rng.random() < 0.15:
                missing_done.add(key)
                v.flaws.add("kx_missing")
                kx = False
            elif (
                not kx
                and accrued[key] * 2 < threshold
                and key not in premature_done
                and rng.random() < 0.04
            ):
                premature_done.add(key)
                v.flaws.add("kx_premature")
                kx = True
            if kx:
                for s in v.services:
                    s["modifiers"].append("KX")

    # --- events ------------------------------------------------------------------------------

    def _event(self, v: _EpVisit) -> dict[str, Any]:
        rng = self.rng
        self.counter += 1
        occurred = datetime(v.dos.year, v.dos.month, v.dos.day, 20, tzinfo=UTC) + timedelta(
            minutes=rng.randrange(0, 200)
        )
        if self.live:
            occurred = self.clock().astimezone(UTC).replace(microsecond=0)
        docs = []
        for i, d in enumerate(v.docs):
            d = {k: _text(x) for k, x in d.items()}
            signed = d.pop("signed", True)
            d["doc_id"] = f"D-{self.counter}-{i}"
            if signed:
                d["signed_at"] = _text(_at(v.dos, 19))
            docs.append(d)
        timed = sum(s.get("minutes", 0) for s in v.services)
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "visit_id": f"V-{self.counter:09d}",
            "patient_ref": v.patient,
            "date_of_service": v.dos.isoformat(),
            "discipline": v.discipline,
            "payer": {"payer_id": v.payer_id, "kind": v.kind},
            "rendering_provider": {
                "npi": npi(rng),
                "credential": discipline_credential(v.discipline),
            },
            "services": v.services,
            "total_timed_minutes": timed,
            "total_treatment_minutes": timed + 10 + rng.randrange(0, 10),
            "documents": docs,
        }
        if v.episode_ref is not None:
            prefix, day = v.episode_ref
            event["episode_ref"] = f"{prefix}-{day:%Y%m%d}"
        return event


def discipline_credential(discipline: str) -> str:
    return CREDENTIAL[discipline][0]


def release_status(rules: frozenset[str]) -> str:
    """The status (EVENTS.md "VisitStatus v1") of a visit whose open alerts are of `rules`, at
    their contract severities: "hold" (an error), "review" (warnings only) or "ready"."""
    severities = {SEVERITY[RuleId(rule)] for rule in rules}
    if Severity.ERROR in severities:
        return "hold"
    return "review" if Severity.WARNING in severities else "ready"


def _lines(combo: list[tuple[str, int, int | None]], discipline: str) -> list[dict[str, Any]]:
    out = []
    for i, (code, units, minutes) in enumerate(combo, start=1):
        line: dict[str, Any] = {
            "line_id": str(i),
            "cpt": code,
            "units": units,
            "modifiers": [MODIFIER[discipline]],
            "allowed_amount": str((Decimal(ALLOWED[code]) * units).quantize(Decimal("0.01"))),
        }
        if minutes is not None:
            line["minutes"] = minutes
        out.append(line)
    return out


def _cents(amount: str) -> int:
    return int(Decimal(amount) * 100)


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _text(value: Any) -> Any:
    """A document field as the event writes it: dates as ISO dates, times as ISO UTC times."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _moved(value: Any, shift: timedelta) -> Any:
    return value + shift if isinstance(value, date) else value  # datetime is a date too


def _first_on_or_after(dates: list[date], when: date) -> int:
    for i, d in enumerate(dates):
        if d >= when:
            return i
    return len(dates)


def _kx_thresholds() -> dict[tuple[int, str], int]:
    """The shipped KX thresholds (compliance/data/kx_thresholds.toml), in cents."""
    from compliance.kx_thresholds import KxBucket, parse_kx_thresholds

    text = resources.files("compliance.data").joinpath("kx_thresholds.toml").read_text("utf-8")
    kx = parse_kx_thresholds(text)
    out = {}
    for year in kx.by_year:
        for bucket in KxBucket:
            cents = kx.cents(year, bucket)
            if cents is not None:
                out[(year, bucket.value)] = cents
    return out


def _referral_exception_from() -> date:
    """The referral exception's first day (compliance/data/episode_policy.toml)."""
    from compliance.episode_policy import parse_episode_policy

    text = resources.files("compliance.data").joinpath("episode_policy.toml").read_text("utf-8")
    return parse_episode_policy(text).referral_exception.effective_from


#: Generator modes for the demo feed and the benchmarks.
MODES = ("visits", "episodes")


def generator(
    mode: str = "visits",
    seed: int = 7,
    malformed_share: float = 0.02,
    live: bool = False,
    clock: Clock = local_now,
) -> VisitGenerator | EpisodeGenerator:
    """The demo feed's generator: "visits" (independent visits, the default) or "episodes";
    `live` with `clock` as in the module doc."""
    if mode == "visits":
        return VisitGenerator(seed=seed, malformed_share=malformed_share, live=live, clock=clock)
    if mode == "episodes":
        return EpisodeGenerator(seed=seed, malformed_share=malformed_share, live=live, clock=clock)
    raise ValueError(f"unknown synthetic mode {mode!r}; one of {', '.join(MODES)}")


def expected_rules(mode: str, intent: str) -> frozenset[str]:
    """The rule ids a record of `mode` with `intent` is meant to raise ("clean" and malformed
    records: none; a malformed record is a dead letter)."""
    if intent == "clean" or intent.startswith("malformed:"):
        return frozenset()
    table = FLAW_RULES if mode == "visits" else EPISODE_FLAWS
    return frozenset().union(*(table[flaw] for flaw in intent.split("+")))
