"""CMS practitioner Medically Unlikely Edit files
(`MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv`).

Layout (ehr_ncci.md sec. 5.2, modelled on a verbatim CMS excerpt): Latin-1 CSV; record 0 is a
quoted multi-line AMA notice; the header's first cell holds an embedded newline
("HCPCS/\\nCPT Code"); four columns: code, "Practitioner Services MUE Values" (integer, 0 is
meaningful), adjudication indicator as digit + label ("1 Line Edit", "2 Date of Service Edit:
Policy", "3 Date of Service Edit: Clinical"), rationale. No per-row dates: the effective date
is only in the file name. The file in force on a date of service is the loaded file with the
latest effective date on or before it. A code without a row has no check: CMS keeps some MUE
values confidential, so "no row" does not mean "no limit".
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from itertools import pairwise
from pathlib import Path

from compliance.ncci_ptp import NcciFileError

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


def parse_mue(raw: bytes, name: str) -> MueFile:
    effective = mue_effective_date(name)
    base = Path(name).name
    text = raw.decode("latin-1")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: dict[str, Mue] = {}
    header_seen = False
    for record in reader:
        where = f"{base} line {reader.line_num}"
        if not record or not any(cell.strip() for cell in record):
            continue
        first = record[0].strip()
        if not header_seen:
            if first.replace("\r", "").replace("\n", "") in ("HCPCS/CPT Code", "HCPCS/ CPT Code"):
                if len(record) < 3 or record[1].strip() != VALUE_HEADER:
                    got = record[1].strip() if len(record) > 1 else "(none)"
                    raise NcciFileError(
                        f"{where}: second column is {got!r}, not {VALUE_HEADER!r} "
                        "(outpatient hospital or DME MUE file?)"
                    )
                header_seen = True
            continue  # the AMA notice before the header
        if not _CODE.match(first) or len(record) < 3:
            raise NcciFileError(f"{where}: not an MUE row (code, value, indicator, rationale)")
        try:
            value = int(record[1].strip())
        except ValueError:
            raise NcciFileError(f"{where}: MUE value {record[1]!r} is not an integer") from None
        if value < 0:
            raise NcciFileError(f"{where}: negative MUE value")
        mai_text = record[2].strip()
        digit, _, label = mai_text.partition(" ")
        if not digit.isdigit() or int(digit) not in _MAI_LABELS:
            raise NcciFileError(f"{where}: adjudication indicator {mai_text!r} is not 1, 2 or 3")
        if label.strip() != _MAI_LABELS[int(digit)]:
            raise NcciFileError(
                f"{where}: adjudication indicator {mai_text!r} does not match "
                f"'{digit} {_MAI_LABELS[int(digit)]}'"
            )
        if first in rows:
            raise NcciFileError(f"{where}: code {first} appears twice")
        rationale = record[3].strip() if len(record) > 3 else ""
        rows[first] = Mue(first, value, Adjudication(int(digit)), rationale, base)
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
