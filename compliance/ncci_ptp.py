"""CMS practitioner NCCI procedure-to-procedure (PTP) edit files (`ccipra-vNNNrN-fK.TXT`).

Layout (ehr_ncci.md sec. 5.1, modelled on a verbatim CMS excerpt): tab-delimited Latin-1 text,
a copyright line, a title line and a column header wrapped over four physical lines, then one
edit per line in seven columns: column 1, column 2, `*` if in existence prior to 1996,
effective date YYYYMMDD, deletion date YYYYMMDD or `*` (no deletion), modifier indicator
(0 = not allowed, 1 = allowed, 9 = not applicable), rationale. Data rows are recognised by
their shape, not by line numbers. A pair may appear several times with disjoint windows; a
row with indicator 9 (deleted edit, e.g. effective = deletion) is never in force and never
bypassable. The Medicaid files put the dates one column left (no "prior to 1996" column) and
are rejected; hospital outpatient files (`ccioph`) are rejected too (this checks
practitioner claims).

Deletion date: inclusive, the last date of service the edit applies to. CMS publishes
deletion dates on quarter ends (20231231, 20180930) and effective dates on quarter starts
(20220101, 20180701), so a deletion date names the last day of the edit's last quarter; the
NCCI text we could reach does not say it in words (docs/rules.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from pathlib import Path

_CODE = re.compile(r"^[0-9A-Z]{5}$")
_YMD = re.compile(r"^[0-9]{8}$")
_NAME = re.compile(r"^cci(pra|oph)-v(\d+)r(\d+)-f(\d+)", re.IGNORECASE)


class NcciFileError(ValueError):
    """An NCCI/MUE file is not in the expected layout; the message names file and line."""


class ModifierIndicator(IntEnum):
    NOT_ALLOWED = 0
    ALLOWED = 1
    NOT_APPLICABLE = 9


#: NCCI PTP-associated modifiers that bypass an indicator-1 edit (NCCI Policy Manual Ch. I,
#: sec. E; EVENTS.md NCCI_PTP_CONFLICT). Anatomic modifiers do not apply to therapy codes.
BYPASS_MODIFIERS = frozenset({"59", "XE", "XS", "XP", "XU"})


@dataclass(frozen=True, slots=True)
class PtpEdit:
    column1: str
    column2: str
    effective: date
    deletion: date | None  # None: `*`, still active
    indicator: ModifierIndicator
    rationale: str
    source: str  # file name and line, or the policy statement

    def in_force(self, day: date) -> bool:
        if self.indicator is ModifierIndicator.NOT_APPLICABLE:
            return False
        if day < self.effective:
            return False
        return self.deletion is None or day <= self.deletion

    def bypassed_by(self, modifiers: Iterable[str]) -> bool:
        return self.indicator is ModifierIndicator.ALLOWED and not BYPASS_MODIFIERS.isdisjoint(
            modifiers
        )


@dataclass(frozen=True, slots=True)
class PtpFile:
    name: str
    version: tuple[int, int]  # (322, 0) for ccipra-v322r0-f1
    edits: tuple[PtpEdit, ...]


def _date(text: str, where: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise NcciFileError(f"{where}: {text!r} is not a valid YYYYMMDD date") from None


def parse_ptp(raw: bytes, name: str) -> PtpFile:
    """Parse one practitioner PTP file's bytes. `name` is its file name (carries the version)."""
    text = raw.decode("latin-1")  # CMS publishes these in Latin-1/cp1252; never fails
    edits: list[PtpEdit] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or not _CODE.match(fields[0].strip()):
            continue  # copyright, title and the wrapped header lines
        where = f"{Path(name).name} line {lineno}"
        f = [x.strip() for x in fields]
        if len(f) >= 3 and _YMD.match(f[2]):
            raise NcciFileError(
                f"{where}: the effective date is in the third column: this is the Medicaid "
                "NCCI PTP layout (no 'prior to 1996' column); load the Medicare practitioner "
                "file (ccipra)"
            )
        if len(f) < 6 or not _CODE.match(f[1]) or f[2] not in ("", "*") or not _YMD.match(f[3]):
            raise NcciFileError(
                f"{where}: not a PTP edit row (expected column 1, column 2, '*' or blank, "
                "effective YYYYMMDD, deletion YYYYMMDD or '*', modifier 0/1/9, rationale)"
            )
        if f[4] != "*" and not _YMD.match(f[4]):
            raise NcciFileError(f"{where}: deletion date {f[4]!r} is neither YYYYMMDD nor '*'")
        if f[5] not in ("0", "1", "9"):
            raise NcciFileError(f"{where}: modifier indicator {f[5]!r} is not 0, 1 or 9")
        effective = _date(f[3], where)
        deletion = None if f[4] == "*" else _date(f[4], where)
        if deletion is not None and deletion < effective:
            raise NcciFileError(f"{where}: deletion date is before the effective date")
        edits.append(
            PtpEdit(
                f[0],
                f[1],
                effective,
                deletion,
                ModifierIndicator(int(f[5])),
                f[6] if len(f) > 6 else "",
                where,
            )
        )
    if not edits:
        raise NcciFileError(f"{name}: no PTP edit rows found")
    m = _NAME.match(Path(name).name)
    if m is None:
        raise NcciFileError(
            f"{name}: cannot tell the PTP file's version from its name "
            "(expected CMS's ccipra-vNNNrN-fK.TXT)"
        )
    if m.group(1).lower() == "oph":
        raise NcciFileError(
            f"{name}: a hospital outpatient PTP file (ccioph); load the practitioner files (ccipra)"
        )
    return PtpFile(Path(name).name, (int(m.group(2)), int(m.group(3))), tuple(edits))


class PtpTable:
    """PTP edits by pair. A pair's rows come from the newest file version that has the pair
    (each quarterly file restates the pair's whole history, including retroactive deletions),
    so a newer quarter's correction wins; `extra` rows (policy statements) apply where no
    loaded file has a row for the pair in force on the date."""

    __slots__ = ("_by_code", "_pairs")

    def __init__(self, files: Iterable[PtpFile] = (), extra: Iterable[PtpEdit] = ()) -> None:
        newest: dict[tuple[str, str], tuple[tuple[int, int], list[PtpEdit]]] = {}
        for f in files:
            for e in f.edits:
                key = (e.column1, e.column2)
                have = newest.get(key)
                if have is None or f.version > have[0]:
                    newest[key] = (f.version, [e])
                elif f.version == have[0]:
                    have[1].append(e)
        pairs: dict[tuple[str, str], tuple[tuple[PtpEdit, ...], tuple[PtpEdit, ...]]] = {
            k: (tuple(v[1]), ()) for k, v in newest.items()
        }
        for e in extra:
            key = (e.column1, e.column2)
            file_rows, policy_rows = pairs.get(key, ((), ()))
            pairs[key] = (file_rows, (*policy_rows, e))
        by_code: dict[str, set[str]] = {}
        for c1, c2 in pairs:
            by_code.setdefault(c1, set()).add(c2)
            by_code.setdefault(c2, set()).add(c1)
        self._pairs = pairs
        self._by_code: Mapping[str, frozenset[str]] = {c: frozenset(v) for c, v in by_code.items()}

    def __len__(self) -> int:
        return len(self._pairs)

    def partners(self, code: str) -> frozenset[str]:
        return self._by_code.get(code, frozenset())

    def edit_on(self, column1: str, column2: str, day: date) -> PtpEdit | None:
        """The edit for (column1, column2) in force on `day`, if any."""
        rows = self._pairs.get((column1, column2))
        if rows is None:
            return None
        file_rows, policy_rows = rows
        for e in file_rows:
            if e.in_force(day):
                return e
        if any(e.effective <= day and (e.deletion is None or day <= e.deletion) for e in file_rows):
            return None  # the file has a row for the date that is not in force (indicator 9)
        for e in policy_rows:
            if e.in_force(day):
                return e
        return None
