"""The CPT/HCPCS catalog: data in `data/cpt_catalog.csv`, validated once at load.

Columns: code, descriptor (our own short words), unit_basis (`timed` = billed in time units;
`service` = billed once per session whatever the time; `unlisted` = units by report, no unit
rule), unit_minutes (length of one unit of a timed code: 15 for "each 15 minutes", 30 for
97550 "initial 30 minutes"), add_on_to (space-separated primary codes of an add-on code),
max_units_per_day (only where the descriptor itself limits it: "initial 15 minutes" = 1),
evaluates (the discipline an evaluation/re-evaluation code evaluates: PT, OT, SLP, AT),
evaluation_kind (`initial` evaluation, which opens an episode of care, or `re`-evaluation; only
with `evaluates`; a column a custom catalog may omit: an evaluation code without a kind opens no
episode and restarts no progress-report period), written_report (descriptor requires a written report), always_therapy (needs GP/GO/GN under
Medicare), effective_from/effective_to (inclusive; blank = open, i.e. in effect before the
catalog's coverage starts in 2015), replaced_by (space-separated codes), source.

Add-on families (CPT: an add-on code is "reported in addition to the primary procedure"): a
primary code and the add-on codes naming it are one service for the unit rules.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from importlib import resources
from typing import Annotated, NamedTuple

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from compliance.dates import Effective
from schemas.decode import describe_errors


class UnitBasis(StrEnum):
    TIMED = "timed"
    SERVICE = "service"
    UNLISTED = "unlisted"


class EvaluationKind(StrEnum):
    """Initial evaluation (opens an episode of care, EVENTS.md "v1 additions") or re-evaluation
    (CMS Pub. 100-02, Ch. 15, sec. 220.3 C; restarts the progress-report period)."""

    INITIAL = "initial"
    RE = "re"


class Evaluates(StrEnum):
    """The discipline an evaluation or re-evaluation code evaluates (AT: athletic training)."""

    PT = "PT"
    OT = "OT"
    SLP = "SLP"
    AT = "AT"


def _blank_to_none(value: object) -> object:
    return None if value == "" else value


def _split_codes(value: object) -> object:
    return value.split() if isinstance(value, str) else value


class CatalogError(ValueError):
    """The catalog file is inconsistent; the message names the row and the problem."""


Code = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{5}$")]
_Opt = BeforeValidator(_blank_to_none)


class CodeEntry(Effective):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Code
    descriptor: Annotated[str, StringConstraints(min_length=3, max_length=120)]
    unit_basis: UnitBasis
    unit_minutes: Annotated[Annotated[int, Field(ge=1, le=240)] | None, _Opt] = None
    add_on_to: Annotated[tuple[Code, ...], BeforeValidator(_split_codes)] = ()
    max_units_per_day: Annotated[Annotated[int, Field(ge=1)] | None, _Opt] = None
    evaluates: Annotated[Evaluates | None, _Opt] = None
    evaluation_kind: Annotated[EvaluationKind | None, _Opt] = None
    written_report: bool
    always_therapy: bool
    effective_from: Annotated[date | None, _Opt] = None
    effective_to: Annotated[date | None, _Opt] = None
    replaced_by: Annotated[tuple[Code, ...], BeforeValidator(_split_codes)] = ()
    source: Annotated[str, StringConstraints(min_length=3)]

    @model_validator(mode="after")
    def _unit_minutes_for_timed_only(self) -> CodeEntry:
        if (self.unit_basis is UnitBasis.TIMED) != (self.unit_minutes is not None):
            raise ValueError("unit_minutes is required for timed codes and only for them")
        if self.evaluates is not None and self.unit_basis is not UnitBasis.SERVICE:
            raise ValueError("an evaluation code (evaluates) must be a service-based code")
        if self.evaluation_kind is not None and self.evaluates is None:
            raise ValueError("evaluation_kind is only for evaluation codes (evaluates)")
        return self

    @property
    def timed(self) -> bool:
        return self.unit_basis is UnitBasis.TIMED


@dataclass(frozen=True, slots=True)
class Family:
    """A timed primary code and its add-on codes: one service for the unit rules.

    `primary_max` is the primary's per-day unit limit (97129 "initial 15 minutes": 1); units
    beyond it belong on the add-on (97130 "each additional 15 minutes")."""

    primary: str
    add_ons: tuple[str, ...]
    primary_unit: int  # minutes of the primary's unit (97550: 30)
    add_on_unit: int  # minutes of each add-on unit (97551: 15)
    primary_max: int

    @property
    def codes(self) -> tuple[str, ...]:
        return (self.primary, *self.add_ons)


class LineFacts(NamedTuple):
    entry: CodeEntry | None
    family: Family | None
    service: str
    pooled: bool


class Catalog:
    """Immutable lookup of catalog entries by code, with add-on families resolved at load."""

    __slots__ = ("_add_ons", "_entries", "_family_of", "_line_facts")

    def __init__(self, entries: Iterable[CodeEntry]) -> None:
        by_code: dict[str, CodeEntry] = {}
        for entry in entries:
            if entry.code in by_code:
                raise CatalogError(f"duplicate code {entry.code}")
            by_code[entry.code] = entry
        for entry in by_code.values():
            for successor in entry.replaced_by:
                if successor not in by_code:
                    raise CatalogError(
                        f"{entry.code}: replaced_by {successor} is not in the catalog"
                    )
            if entry.replaced_by and entry.effective_to is None:
                raise CatalogError(f"{entry.code}: replaced_by given but no effective_to")
        self._entries: Mapping[str, CodeEntry] = by_code
        self._add_ons, self._family_of = _families(by_code)
        #: Memo of `line_facts` for the catalog's own codes (bounded by the catalog's size).
        self._line_facts: dict[str, LineFacts] = {}

    def line_facts(self, code: str) -> LineFacts:
        """What every rule reads about a billed code, computed once per catalog code (per
        visit line it cost more than most rules, bench/RESULTS.md): its entry, its add-on
        family (timed codes only), the unit rules' service (the family's primary code, else
        the code) and whether it is pooled under the CMS 8-minute rule (15-minute timed codes
        or families, CMS Pub. 100-04, Ch. 5, sec. 20.2). Codes not in the catalog are not
        memoised: they come from input, so a feed of random codes cannot grow the memo."""
        facts = self._line_facts.get(code)
        if facts is not None:
            return facts
        entry = self._entries.get(code)
        timed = entry is not None and entry.timed
        family = self._family_of.get(code) if timed else None
        if family is not None:
            pooled = family.primary_unit == 15 and family.add_on_unit == 15
        else:
            pooled = timed and entry is not None and entry.unit_minutes == 15
        facts = LineFacts(entry, family, family.primary if family is not None else code, pooled)
        if entry is not None:
            self._line_facts[code] = facts
        return facts

    def get(self, code: str) -> CodeEntry | None:
        return self._entries.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def codes(self) -> list[str]:
        return sorted(self._entries)

    def family(self, code: str) -> Family | None:
        """The add-on family a timed code belongs to (as primary or add-on), if any."""
        return self._family_of.get(code)

    def add_ons_of(self, primary: str) -> tuple[str, ...]:
        return self._add_ons.get(primary, ())

    def replacements_on(self, code: str, day: date) -> list[str]:
        """Codes that replace `code` and are in effect on `day`, following chains of deletions
        (97532 -> 97127 -> 97129/97130)."""
        found: list[str] = []
        seen = {code}
        frontier = list(self._entries[code].replaced_by) if code in self._entries else []
        while frontier:
            nxt = frontier.pop(0)
            if nxt in seen:
                continue
            seen.add(nxt)
            entry = self._entries[nxt]
            if entry.in_effect(day):
                found.append(nxt)
            else:
                frontier.extend(entry.replaced_by)
        return sorted(found)


def _families(
    by_code: Mapping[str, CodeEntry],
) -> tuple[dict[str, tuple[str, ...]], dict[str, Family]]:
    """Validate the add_on_to graph and build the timed families.

    Rejected: unknown or self targets, an add-on of an add-on (CPT add-ons name primary
    procedures; chains would also allow cycles), timed families mixing untimed codes, a timed
    add-on naming several primaries (its minutes would belong to two services), and a timed
    primary without a per-day limit (nothing would say which units go to the add-on)."""
    add_ons: dict[str, list[str]] = {}
    for entry in by_code.values():
        for primary in entry.add_on_to:
            if primary == entry.code:
                raise CatalogError(f"{entry.code}: add_on_to names the code itself")
            target = by_code.get(primary)
            if target is None:
                raise CatalogError(f"{entry.code}: add_on_to {primary} is not in the catalog")
            if target.add_on_to:
                raise CatalogError(
                    f"{entry.code}: add_on_to {primary}, which is itself an add-on code "
                    "(chains and cycles of add-on codes are not allowed)"
                )
            add_ons.setdefault(primary, []).append(entry.code)
    family_of: dict[str, Family] = {}
    for primary, codes in sorted(add_ons.items()):
        head = by_code[primary]
        members = [by_code[c] for c in codes]
        if not head.timed and not any(m.timed for m in members):
            continue  # untimed families need only ADD_ON_CODE_WITHOUT_PRIMARY
        for m in (head, *members):
            if not m.timed:
                raise CatalogError(f"{m.code}: add-on family of {primary} mixes timed and untimed")
        for m in members:
            if len(m.add_on_to) != 1:
                raise CatalogError(f"{m.code}: a timed add-on must name exactly one primary")
        units = {m.unit_minutes for m in members}
        if len(units) != 1:
            raise CatalogError(f"add-on codes of {primary} have different unit lengths")
        if head.max_units_per_day is None:
            raise CatalogError(
                f"{primary}: primary of timed add-on codes needs max_units_per_day "
                "(its descriptor's 'initial ...' limit)"
            )
        assert head.unit_minutes is not None
        fam = Family(
            primary,
            tuple(sorted(codes)),
            head.unit_minutes,
            units.pop() or head.unit_minutes,
            head.max_units_per_day,
        )
        for c in fam.codes:
            family_of[c] = fam
    return {p: tuple(sorted(c)) for p, c in add_ons.items()}, family_of


def parse_catalog(text: str) -> Catalog:
    reader = csv.DictReader(io.StringIO(text))
    entries = []
    for lineno, row in enumerate(reader, start=2):
        if None in row:
            raise CatalogError(
                f"cpt_catalog.csv line {lineno}: more fields than the header "
                "(quote descriptors and sources that contain commas)"
            )
        try:
            entries.append(CodeEntry.model_validate(row))
        except ValidationError as exc:
            raise CatalogError(
                f"cpt_catalog.csv line {lineno} ({row.get('code')}): {describe_errors(exc.errors())}"
            ) from exc
    return Catalog(entries)


def load_catalog() -> Catalog:
    """The catalog shipped in the package."""
    text = resources.files("compliance.data").joinpath("cpt_catalog.csv").read_text("utf-8")
    return parse_catalog(text)


__all__ = [
    "Catalog",
    "CatalogError",
    "CodeEntry",
    "Evaluates",
    "EvaluationKind",
    "Family",
    "UnitBasis",
    "load_catalog",
    "parse_catalog",
]
