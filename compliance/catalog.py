"""The CPT catalog: data in `data/cpt_catalog.csv`, validated once at load.

Columns: code, descriptor (our own short words), unit_basis (`timed` = billed in 15-minute units;
`service` = billed once per session whatever the time; `unlisted` = units by report, no unit rule),
written_report (descriptor requires a written report), always_therapy (needs GP/GO/GN under
Medicare), effective_from/effective_to (inclusive; blank = open, i.e. in effect before the
catalog's coverage starts in 2015), replaced_by (space-separated codes), source.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import date
from enum import StrEnum
from importlib import resources
from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, StringConstraints, ValidationError

from compliance.dates import Effective
from schemas.decode import describe_errors


class UnitBasis(StrEnum):
    TIMED = "timed"
    SERVICE = "service"
    UNLISTED = "unlisted"


def _blank_to_none(value: object) -> object:
    return None if value == "" else value


def _split_codes(value: object) -> object:
    return value.split() if isinstance(value, str) else value


class CatalogError(ValueError):
    """The catalog file is inconsistent; the message names the row and the problem."""


Code = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{5}$")]


class CodeEntry(Effective):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Code
    descriptor: Annotated[str, StringConstraints(min_length=3, max_length=120)]
    unit_basis: UnitBasis
    written_report: bool
    always_therapy: bool
    effective_from: Annotated[date | None, BeforeValidator(_blank_to_none)] = None
    effective_to: Annotated[date | None, BeforeValidator(_blank_to_none)] = None
    replaced_by: Annotated[tuple[Code, ...], BeforeValidator(_split_codes)] = ()
    source: Annotated[str, StringConstraints(min_length=3)]

    @property
    def timed(self) -> bool:
        return self.unit_basis is UnitBasis.TIMED


class Catalog:
    """Immutable lookup of catalog entries by code."""

    __slots__ = ("_entries",)

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

    def get(self, code: str) -> CodeEntry | None:
        return self._entries.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def codes(self) -> list[str]:
        return sorted(self._entries)

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
    """The catalog shipped in the package (read once per process by the engine)."""
    text = resources.files("compliance.data").joinpath("cpt_catalog.csv").read_text("utf-8")
    return parse_catalog(text)


__all__ = ["Catalog", "CatalogError", "CodeEntry", "UnitBasis", "load_catalog", "parse_catalog"]
