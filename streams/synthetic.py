"""Realistic synthetic therapy visits for the demo feed and the benchmarks. Seeded, no I/O.

The mix: PT 55%, OT 30%, SLP 15%; Medicare 45%, Medicare Advantage 15%, Medicaid 10%, commercial
25%, workers' comp 5%; about 70% of visits billed and documented correctly, the rest carry one
flaw each (the kinds the rules look for), and `malformed_share` of records are not valid events.
Every id is synthetic and opaque: no names, MRNs or dates of birth.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from compliance.units import cms_split, units_for_minutes

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
MODIFIER = {"PT": "GP", "OT": "GO", "SLP": "GN"}
CREDENTIAL = {"PT": ["PT", "PTA"], "OT": ["OT", "OTA"], "SLP": ["SLP"]}
PAYERS = [
    ("medicare", "MEDICARE-B", 45),
    ("medicare_advantage", "MA-PLAN-7", 15),
    ("medicaid", "MEDICAID-STATE", 10),
    ("commercial", "COMM-PPO-3", 25),
    ("workers_comp", "WC-CARRIER-2", 5),
]
FLAWS = [
    "units_over",
    "units_under",
    "misallocated",
    "minutes_missing",
    "total_mismatch",
    "treatment_missing",
    "report_missing",
    "deleted_code",
    "untimed_units",
    "modifier_missing",
    "unknown_code",
]
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
class Record:
    key: bytes
    value: bytes
    #: "clean", a flaw name, or "malformed:<kind>" - what the generator meant, for tests/benches.
    intent: str


class VisitGenerator:
    def __init__(
        self,
        seed: int = 7,
        clean_share: float = 0.7,
        malformed_share: float = 0.02,
        patients: int = 5000,
        start: date = date(2026, 3, 2),
        live: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.clean_share = clean_share
        self.malformed_share = malformed_share
        self.patients = [f"P-{self.rng.getrandbits(32):08x}" for _ in range(patients)]
        self.start = start
        self.counter = 0
        #: live: visits completed just now (demo: event-age metrics mean something); otherwise
        #: dates spread over 60 days from `start`, reproducible from the seed.
        self.live = live

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
        _FLAW[flaw](self, visit)
        return Record(key, orjson.dumps(visit), flaw)

    def visit(self) -> dict[str, Any]:
        rng = self.rng
        self.counter += 1
        discipline = rng.choices(["PT", "OT", "SLP"], [55, 30, 15])[0]
        kind, payer_id, _ = rng.choices(PAYERS, [w for *_, w in PAYERS])[0]
        if self.live:
            occurred = datetime.now(UTC).replace(microsecond=0)
            dos = occurred.date()
        else:
            dos = self.start + timedelta(days=rng.randrange(0, 60))
            occurred = datetime(dos.year, dos.month, dos.day, 14, tzinfo=UTC) + timedelta(
                minutes=rng.randrange(0, 400)
            )
        cms = kind in ("medicare", "medicare_advantage", "medicaid")
        services, timed_total = self._services(discipline, cms)
        untimed_minutes = sum(s.pop("_untimed_minutes", 0) for s in services)
        return {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "visit_id": f"V-{self.counter:09d}",
            "patient_ref": rng.choice(self.patients),
            "date_of_service": dos.isoformat(),
            "discipline": discipline,
            "payer": {"payer_id": payer_id, "kind": kind},
            "rendering_provider": {
                "npi": f"1{rng.randrange(10**8, 10**9)}",
                "credential": CREDENTIAL[discipline][0],
            },
            "services": services,
            "total_timed_minutes": timed_total,
            "total_treatment_minutes": timed_total + untimed_minutes + rng.randrange(0, 15),
            "documents": [
                {
                    "doc_id": f"D-{self.counter}",
                    "kind": "daily_note",
                    "signed_at": (occurred + timedelta(hours=1)).isoformat(),
                    "author_credential": CREDENTIAL[discipline][0],
                }
            ],
        }

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


def _timed_lines(v: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in v["services"] if "minutes" in s]


def _units_over(g: VisitGenerator, v: dict[str, Any]) -> None:
    lines = _timed_lines(v) or v["services"]
    g.rng.choice(lines)["units"] += 1


def _units_under(g: VisitGenerator, v: dict[str, Any]) -> None:
    billed = [s for s in _timed_lines(v) if s["units"] > 0]
    if billed:
        g.rng.choice(billed)["units"] -= 1
    else:
        _units_over(g, v)


def _misallocated(g: VisitGenerator, v: dict[str, Any]) -> None:
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


def _minutes_missing(g: VisitGenerator, v: dict[str, Any]) -> None:
    lines = [s for s in _timed_lines(v) if s["units"] > 0]
    if lines:
        del g.rng.choice(lines)["minutes"]
    else:
        _units_over(g, v)


def _total_mismatch(g: VisitGenerator, v: dict[str, Any]) -> None:
    if g.rng.random() < 0.5 and _timed_lines(v):
        del v["total_timed_minutes"]
    else:
        v["total_timed_minutes"] = (v["total_timed_minutes"] or 0) + g.rng.randrange(1, 5)
        v["total_treatment_minutes"] += 5


def _treatment_missing(g: VisitGenerator, v: dict[str, Any]) -> None:
    if g.rng.random() < 0.5 or not v["total_timed_minutes"]:
        del v["total_treatment_minutes"]
    else:
        v["total_treatment_minutes"] = max(0, (v["total_timed_minutes"] or 0) - 5)


def _report_missing(g: VisitGenerator, v: dict[str, Any]) -> None:
    v["services"].append(
        {
            "line_id": str(len(v["services"]) + 1),
            "cpt": "97750",
            "units": 0,
            "minutes": 5,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )
    v["services"][-1]["units"] = 1
    v["services"][-1]["minutes"] = 15
    v["total_timed_minutes"] = (v["total_timed_minutes"] or 0) + 15
    v["total_treatment_minutes"] += 15
    if v["payer"]["kind"] in ("medicare", "medicare_advantage", "medicaid"):
        # Keep the CMS split valid so the report is the visit's only flaw.
        minutes: dict[str, int] = {}
        for s in _timed_lines(v):
            minutes[s["cpt"]] = minutes.get(s["cpt"], 0) + s["minutes"]
        alloc = cms_split(minutes).allocations(limit=1)[0]
        for s in _timed_lines(v):
            s["units"] = alloc[s["cpt"]]
            alloc[s["cpt"]] = 0


def _deleted_code(g: VisitGenerator, v: dict[str, Any]) -> None:
    old = {"PT": "97001", "OT": "97003", "SLP": "92506"}[v["discipline"]]
    v["services"].append(
        {
            "line_id": str(len(v["services"]) + 1),
            "cpt": old,
            "units": 1,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )


def _untimed_units(g: VisitGenerator, v: dict[str, Any]) -> None:
    code = UNTIMED[v["discipline"]][0]
    v["services"].append(
        {
            "line_id": str(len(v["services"]) + 1),
            "cpt": code,
            "units": 2,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )


def _modifier_missing(g: VisitGenerator, v: dict[str, Any]) -> None:
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
                "line_id": str(len(v["services"]) + 1),
                "cpt": UNTIMED[v["discipline"]][0],
                "units": 1,
                "modifiers": [],
            }
        )


def _unknown_code(g: VisitGenerator, v: dict[str, Any]) -> None:
    v["services"].append(
        {
            "line_id": str(len(v["services"]) + 1),
            "cpt": "98975",  # remote therapeutic monitoring set-up: billed by PTs, not a catalog code
            "units": 1,
            "modifiers": [MODIFIER[v["discipline"]]],
        }
    )


_FLAW = {
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
