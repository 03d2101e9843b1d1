"""CMS practitioner NCCI procedure-to-procedure (PTP) edit files (`ccipra-vNNNrN-fK.TXT`).

Layout (ehr_ncci.md sec. 5.1, modelled on a verbatim CMS excerpt): tab-delimited Latin-1 text,
a copyright line, a title line and a column header wrapped over four physical lines, then one
edit per line in seven columns: column 1, column 2, `*` if in existence prior to 1996,
effective date YYYYMMDD, deletion date YYYYMMDD or `*` (no deletion), modifier indicator
(0 = not allowed, 1 = allowed, 9 = not applicable), rationale. Only those documented preamble
lines and blank lines are skipped, wherever they are; every other line must be a valid edit
row, else the load fails naming file, line and column (a skipped malformed row would be an
edit silently lost); a line that is neither says which documented line it differs from. A
UTF-8 byte-order mark (a file re-saved by Excel or Notepad) is dropped, and CRLF, LF or CR
alone end a line (`decode_cms`, docs/rules.md "PTP file semantics"). A pair may appear
several times with disjoint windows; a row with indicator 9 (deleted edit, e.g. effective =
deletion) is never in force and never bypassable. The Medicaid files put the dates one column left (no "prior to 1996" column) and
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

from schemas.decode import UTF8_BOM

_CODE = re.compile(r"^[0-9A-Z]{5}$")
_YMD = re.compile(r"^[0-9]{8}$")
PTP_NAME = re.compile(r"^cci(pra|oph)-v(\d+)r(\d+)-f(\d+)", re.IGNORECASE)
_LINE_END = re.compile(r"\r\n|\r|\n")


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


#: The lines CMS puts before the data rows (ehr_ncci.md sec. 5.1, the verbatim CMS excerpt): the
#: AMA notice, the title and the column header wrapped over four lines, compared cell by cell
#: (stripped, trailing empty cells ignored). Nothing else is skipped: a line that is neither one
#: of these, nor blank, nor a valid edit row is an error naming the file, line and column.
_NOTICE = re.compile(r"^CPT only copyright \d{4} American Medical Association\b")
_PREAMBLE = frozenset(
    {
        ("Column1/Column2 Edits",),
        (
            "Column 1",
            "Column 2",
            "*=in existence",
            "Effective",
            "Deletion",
            "Modifier",
            "PTP Edit Rationale",
        ),
        ("", "", "prior to 1996", "Date", "Date", "0=not allowed"),
        ("", "", "", "", "*=no data", "1=allowed"),
        ("", "", "", "", "", "9=not applicable"),
    }
)
#: The Medicaid NCCI PTP header (no "prior to 1996" column): recognised to say what the file is.
_MEDICAID_HEADER = (
    "Column 1",
    "Column 2",
    "Effective Date",
    "Deletion Date",
    "Modifier Indicator",
    "PTP Edit Rationale",
)
_MEDICAID = (
    "this is the Medicaid NCCI PTP layout (no 'prior to 1996' column); load the Medicare "
    "practitioner file (ccipra)"
)
_COLUMNS = 7


def trimmed_cells(fields: list[str]) -> tuple[str, ...]:
    """A CMS row's cells, stripped, without trailing empty ones (PTP and MUE files alike)."""
    cells = [x.strip() for x in fields]
    while cells and not cells[-1]:
        cells.pop()
    return tuple(cells)


def _skipped(cells: tuple[str, ...]) -> bool:
    """Blank, or one of the documented preamble lines."""
    if not cells:
        return True
    if len(cells) == 1 and _NOTICE.match(cells[0]):
        return True
    return cells in _PREAMBLE


def _code(cell: str, where: str, column: int) -> str:
    if not _CODE.match(cell):
        raise NcciFileError(
            f"{where}, column {column}: {cell[:40]!r} is not a 5-character HCPCS/CPT code"
        )
    return cell


_HEADER_SHOWN = "'Column 1<TAB>Column 2<TAB>*=in existence<TAB>Effective<TAB>Deletion<TAB>Modifier"


def _not_a_row(cells: tuple[str, ...], line: str, where: str) -> NcciFileError:
    """The error for a line whose column 1 is no code: a row with a bad code (more cells that
    look like codes or dates), a row whose columns are separated by spaces (the hint only when
    the line has spaces and no tab), or a line that is not one of the documented preamble lines,
    said with what was expected (a variant wording is refused, not guessed: ehr_ncci.md 5.1)."""
    cell = cells[0]
    if "\t" not in line and " " in line and _CODE.match(line.split(" ", 1)[0]):
        return NcciFileError(
            f"{where}, column 1: {cell[:40]!r} is not a 5-character HCPCS/CPT code "
            "(columns separated by spaces, not tabs?)"
        )
    if any(_CODE.match(c) or _YMD.match(c) for c in cells[1:]) or (
        len(cells) == 1 and len(cell) <= 7 and " " not in cell
    ):
        return NcciFileError(
            f"{where}, column 1: {cell[:40]!r} is not a 5-character HCPCS/CPT code"
        )
    same = [p for p in _PREAMBLE if len(p) == len(cells) and len(p) > 1]
    if same:
        best = max(same, key=lambda p: sum(a == b for a, b in zip(p, cells, strict=True)))
        k = next(n for n, (a, b) in enumerate(zip(best, cells, strict=True)) if a != b)
        expected = (
            f"its cell {k + 1} is {cells[k][:40]!r} where the documented header line has "
            f"{best[k]!r}"
        )
    else:
        expected = (
            "the documented lines are the AMA notice 'CPT only copyright <year> American Medical "
            "Association...', the title 'Column1/Column2 Edits' and the column header "
            f"{_HEADER_SHOWN}<TAB>PTP Edit Rationale' with its three continuation lines; "
            "variant wordings are not recognised"
        )
    return NcciFileError(
        f"{where}, column 1: {cell[:40]!r}: line {where.rsplit(' ', 1)[-1]} is not one of the "
        f"documented header/notice lines of a CMS PTP file ({expected}), nor an edit row "
        "(column 1 is not a 5-character HCPCS/CPT code)"
    )


def decode_cms(raw: bytes, base: str) -> str:
    """A CMS file's text: Latin-1 as CMS publishes it (never fails). A UTF-8 byte-order mark
    (Excel's "CSV UTF-8" and Notepad write one when an operator re-saves the file) is dropped
    and the rest read as UTF-8 when it is UTF-8, else as Latin-1: codes, dates and values are
    ASCII either way; only a rationale's accented characters depend on it. UTF-16 is refused
    by name (every other byte would be a NUL in a cell)."""
    if raw.startswith(UTF8_BOM):
        rest = raw[len(UTF8_BOM) :]
        try:
            return rest.decode("utf-8")
        except UnicodeDecodeError:
            return rest.decode("latin-1")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NcciFileError(
            f"{base}: UTF-16 text (byte-order mark {raw[:2].hex(' ').upper()}); save it as "
            "Latin-1 or UTF-8 text"
        )
    return raw.decode("latin-1")  # CMS publishes these in Latin-1/cp1252; never fails


def _row(cells: tuple[str, ...], line: str, where: str, source: str) -> PtpEdit:
    """One edit row; every check names its column (CMS's numbering, 1 to 7)."""
    if not _CODE.match(cells[0]):
        raise _not_a_row(cells, line, where)
    c1 = cells[0]
    if len(cells) >= 3 and _YMD.match(cells[2]):
        raise NcciFileError(f"{where}, column 3: an effective date here: {_MEDICAID}")
    if len(cells) < 6:
        raise NcciFileError(
            f"{where}, column {len(cells) + 1}: missing (the row ends after column "
            f"{len(cells)}; an edit row has column 1, column 2, '*' or blank, effective "
            "YYYYMMDD, deletion YYYYMMDD or '*', modifier 0/1/9, rationale)"
        )
    c2 = _code(cells[1], where, 2)
    if cells[2] not in ("", "*"):
        raise NcciFileError(f"{where}, column 3: {cells[2]!r} is neither '*' nor blank")
    if not _YMD.match(cells[3]):
        raise NcciFileError(f"{where}, column 4: effective date {cells[3]!r} is not YYYYMMDD")
    if cells[4] != "*" and not _YMD.match(cells[4]):
        raise NcciFileError(
            f"{where}, column 5: deletion date {cells[4]!r} is neither YYYYMMDD nor '*'"
        )
    if cells[5] not in ("0", "1", "9"):
        raise NcciFileError(f"{where}, column 6: modifier indicator {cells[5]!r} is not 0, 1 or 9")
    if len(cells) > _COLUMNS:
        raise NcciFileError(f"{where}, column {_COLUMNS + 1}: more than {_COLUMNS} columns")
    effective = _date(cells[3], f"{where}, column 4")
    deletion = None if cells[4] == "*" else _date(cells[4], f"{where}, column 5")
    if deletion is not None and deletion < effective:
        raise NcciFileError(f"{where}, column 5: deletion date is before the effective date")
    rationale = cells[6] if len(cells) > 6 else ""
    return PtpEdit(c1, c2, effective, deletion, ModifierIndicator(int(cells[5])), rationale, source)


def parse_ptp(raw: bytes, name: str) -> PtpFile:
    """Parse one practitioner PTP file's bytes. `name` is its file name (carries the version)."""
    base = Path(name).name
    text = decode_cms(raw, base)
    edits: list[PtpEdit] = []
    # Line ends: CRLF (CMS's), LF, or CR alone (old Mac text; Python's csv reader takes the
    # same three for the MUE and fee files). Not str.splitlines(): it would also split on
    # \x85, which Latin-1 decodes from cp1252's ellipsis inside a rationale.
    for lineno, line in enumerate(_LINE_END.split(text), start=1):
        cells = trimmed_cells(line.split("\t"))
        where = f"{base} line {lineno}"
        if cells == _MEDICAID_HEADER:
            raise NcciFileError(f"{where}: the header names no 'prior to 1996' column: {_MEDICAID}")
        if _skipped(cells):
            continue
        edits.append(_row(cells, line, where, where))
    if not edits:
        raise NcciFileError(f"{name}: no PTP edit rows found")
    m = PTP_NAME.match(base)
    if m is None:
        raise NcciFileError(
            f"{name}: cannot tell the PTP file's version from its name "
            "(expected CMS's ccipra-vNNNrN-fK.TXT)"
        )
    if m.group(1).lower() == "oph":
        raise NcciFileError(
            f"{name}: a hospital outpatient PTP file (ccioph); load the practitioner files (ccipra)"
        )
    return PtpFile(base, (int(m.group(2)), int(m.group(3))), tuple(edits))


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
