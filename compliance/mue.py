"""CMS practitioner Medically Unlikely Edit files
(`MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv`).

Layout (ehr_ncci.md sec. 5.2, modelled on a verbatim CMS excerpt): Latin-1 CSV; record 0 is a
quoted multi-line AMA notice; the header's first cell holds an embedded newline
("HCPCS/\\nCPT Code"); four columns: code, "Practitioner Services MUE Values" (integer, 0 is
meaningful), adjudication indicator as digit + label ("1 Line Edit", "2 Date of Service Edit:
Policy", "3 Date of Service Edit: Clinical"), rationale. No per-row dates: the effective date
is only in the file name. The file in force on a date of service is the loaded file with the
latest effective date on or before it. A code without a row has no check: CMS keeps some MUE
values confidential, so "no row" does not mean "no limit". Only the notice, the header and blank
records are skipped; any other record that is not a valid row fails the load (file, line,
column): a skipped row would be a limit silently lost.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from itertools import pairwise
from pathlib import Path

from compliance.csv_records import csv_records
from compliance.ncci_ptp import NcciFileError, decode_cms, trimmed_cells

_NAME = re.compile(
    r"^MCR_MUE_PractitionerServices_Eff_(\d{2})-(\d{2})-(\d{4})\.csv$", re.IGNORECASE
)
_CODE = re.compile(r"^[0-9A-Z]{5}$")
_MAI_LABELS = {
    1: "Line Edit",
    2: "Date of Service Edit: Policy",
    3: "Date of Service Edit: Clinical",
}
VALUE_HEADER = "Practitioner Services MUE Values"


class Adjudication(IntEnum):
    """MUE adjudication indicator (MAI): 1 per claim line; 2 and 3 per date of service."""

    LINE = 1
    DATE_OF_SERVICE_POLICY = 2
    DATE_OF_SERVICE_CLINICAL = 3

    @property
    def per_day(self) -> bool:
        return self is not Adjudication.LINE


@dataclass(frozen=True, slots=True)
class Mue:
    code: str
    value: int
    adjudication: Adjudication
    rationale: str
    source: str  # file name


@dataclass(frozen=True, slots=True)
class MueFile:
    name: str
    effective: date
    rows: Mapping[str, Mue]


def mue_effective_date(name: str) -> date:
    m = _NAME.match(Path(name).name)
    if m is None:
        raise NcciFileError(
            f"{name}: not a practitioner MUE file name "
            "(expected MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv; the effective date is "
            "only in the name)"
        )
    try:
        return date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
    except ValueError:
        raise NcciFileError(f"{name}: the date in the file name is not a valid date") from None


#: The AMA notice CMS puts in record 0 (ehr_ncci.md sec. 5.2, the verbatim CMS excerpt): one
#: quoted multi-line cell, the other cells empty. With the header, the only record skipped.
_NOTICE = re.compile(
    r"^Current Procedural Terminology \(CPT\) codes, descriptions and other data only are "
    r"copyright \d{4} American Medical Association\b"
)
_HEADERS = ("HCPCS/CPT Code", "HCPCS/ CPT Code")
_VALUE = re.compile(r"^[0-9]+$")  # int() would also take "+4", "4_0" and non-ASCII digits
_COLUMNS = 4


_EXPECTED = (
    "the documented lines are the AMA notice 'Current Procedural Terminology (CPT) codes, "
    "descriptions and other data only are copyright <year> American Medical Association...' "
    "(one quoted cell) and the header 'HCPCS/CPT Code','Practitioner Services MUE Values',... "
    "before the first row; variant wordings are not recognised"
)


def _row(cells: Sequence[str], where: str, base: str) -> Mue:
    """One MUE row; every check names its column (1 to 4)."""
    if not _CODE.match(cells[0]):
        cell = cells[0][:40]
        # The hint only for a one-cell record holding another separator; a record that is
        # neither a row (no value in column 2) nor a documented line is said to be so.
        spaced = cells[0].replace("\t", " ").replace(";", " ")
        if len(cells) == 1 and " " in spaced and _CODE.match(spaced.split(" ", 1)[0]):
            raise NcciFileError(
                f"{where}, column 1: {cell!r} is not a 5-character HCPCS/CPT code "
                "(columns separated by something other than commas?)"
            )
        if (len(cells) > 1 and _VALUE.match(cells[1])) or len(cells[0]) <= 7:
            raise NcciFileError(f"{where}, column 1: {cell!r} is not a 5-character HCPCS/CPT code")
        raise NcciFileError(
            f"{where}, column 1: {cell!r}: line {where.rsplit(' ', 1)[-1]} is not one of the "
            f"documented header/notice lines of a CMS MUE file ({_EXPECTED}), nor an MUE row "
            "(column 1 is not a 5-character HCPCS/CPT code)"
        )
    if len(cells) < 3:
        raise NcciFileError(
            f"{where}, column {len(cells) + 1}: missing (the row ends after column "
            f"{len(cells)}; an MUE row has code, value, adjudication indicator, rationale)"
        )
    if not _VALUE.match(cells[1]):
        raise NcciFileError(
            f"{where}, column 2: MUE value {cells[1]!r} is not an integer of 0 or more"
        )
    digit, _, label = cells[2].partition(" ")
    if not digit.isdigit() or int(digit) not in _MAI_LABELS:
        raise NcciFileError(
            f"{where}, column 3: adjudication indicator {cells[2]!r} is not 1, 2 or 3"
        )
    if label.strip() != _MAI_LABELS[int(digit)]:
        raise NcciFileError(
            f"{where}, column 3: adjudication indicator {cells[2]!r} does not match "
            f"'{digit} {_MAI_LABELS[int(digit)]}'"
        )
    if len(cells) > _COLUMNS:
        raise NcciFileError(f"{where}, column {_COLUMNS + 1}: more than {_COLUMNS} columns")
    rationale = cells[3] if len(cells) > 3 else ""
    return Mue(cells[0], int(cells[1]), Adjudication(int(digit)), rationale, base)


def parse_mue(raw: bytes, name: str) -> MueFile:
    """Parse one practitioner MUE file. Skipped: blank records, the AMA notice and the header
    before the first row, nothing else (a record that is none of them nor a valid row is an
    error naming file, line and column)."""
    effective = mue_effective_date(name)
    base = Path(name).name
    text = decode_cms(raw, base)  # a UTF-8 byte-order mark is dropped (ncci_ptp.decode_cms)
    rows: dict[str, Mue] = {}
    header_seen = False
    for where, record in csv_records(text, base, NcciFileError):
        cells = trimmed_cells(record)
        if not cells:
            continue
        first = cells[0].replace("\r", "").replace("\n", "")
        if not header_seen:
            if len(cells) == 1 and _NOTICE.match(first):
                continue
            if first not in _HEADERS:
                row = " (a data row before the header?)" if _CODE.match(first) else ""
                raise NcciFileError(
                    f"{where}, column 1: {first[:50]!r}: line {where.rsplit(' ', 1)[-1]} is not "
                    f"one of the documented header/notice lines of a CMS MUE file before the "
                    f"header ({_EXPECTED}){row}"
                )
            if len(cells) < 2 or cells[1] != VALUE_HEADER:
                got = cells[1] if len(cells) > 1 else "(none)"
                raise NcciFileError(
                    f"{where}, column 2: {got!r}, not {VALUE_HEADER!r} "
                    "(outpatient hospital or DME MUE file?)"
                )
            header_seen = True
            continue
        mue = _row(cells, where, base)
        if mue.code in rows:
            raise NcciFileError(f"{where}, column 1: code {mue.code} appears twice")
        rows[mue.code] = mue
    if not header_seen:
        raise NcciFileError(f"{base}: no 'HCPCS/CPT Code' header row found")
    return MueFile(base, effective, rows)


class MueTable:
    """MUE files by effective date; `on(code, day)` uses the file in force on `day`."""

    __slots__ = ("_dates", "_files")

    def __init__(self, files: Iterable[MueFile] = ()) -> None:
        ordered = sorted(files, key=lambda f: f.effective)
        for a, b in pairwise(ordered):
            if a.effective == b.effective:
                raise NcciFileError(f"two MUE files effective {a.effective}: {a.name}, {b.name}")
        self._files = ordered
        self._dates = [f.effective for f in ordered]

    def __len__(self) -> int:
        return len(self._files)

    def on(self, code: str, day: date) -> Mue | None:
        i = bisect.bisect_right(self._dates, day) - 1
        if i < 0:
            return None  # before the first loaded file: nothing known
        return self._files[i].rows.get(code)
