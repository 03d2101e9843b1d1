"""Fee schedules: the per-unit amount of a code in a year for a payer, for `amount_at_risk`
when a line carries no `allowed_amount`. Data in `fee_schedule.csv` files, validated at load.

Columns: code, year, payer (a payer_id, or `*` for any payer), locality (free text naming the
fee schedule locality the amount is for, e.g. a MAC locality; informational), amount (decimal
string, USD, per unit), source (where the amount comes from). The shipped file has only the
header: amounts are published per locality and year (CMS MPFS, payer contracts) and none is
invented here; an operator adds the file of their locality to the rule set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from compliance.csv_records import csv_records
from schemas.common import Usd
from schemas.decode import describe_errors

COLUMNS = ["code", "year", "payer", "locality", "amount", "source"]
_YEAR = re.compile(r"^[0-9]{4}$")
ANY_PAYER = "*"


class FeeScheduleError(ValueError):
    """A fee schedule file is inconsistent; the message names the file and line."""


class FeeRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{5}$")]
    year: Annotated[int, Field(ge=2000, le=2100)]
    payer: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    locality: str
    amount: Usd
    source: Annotated[str, StringConstraints(min_length=3)]


class FeeSchedule:
    __slots__ = ("_amounts",)

    def __init__(self, rows: Iterable[FeeRow] = ()) -> None:
        amounts: dict[tuple[str, int, str], Decimal] = {}
        for r in rows:
            key = (r.code, r.year, r.payer)
            if key in amounts:
                raise FeeScheduleError(
                    f"two amounts for {r.code} in {r.year} for payer {r.payer!r}"
                )
            amounts[key] = Decimal(r.amount)
        self._amounts = amounts

    def __len__(self) -> int:
        return len(self._amounts)

    def per_unit(self, code: str, year: int, payer_id: str) -> Decimal | None:
        """The payer's own amount, else the any-payer amount, else None (unknown)."""
        got = self._amounts.get((code, year, payer_id))
        return got if got is not None else self._amounts.get((code, year, ANY_PAYER))


def parse_fee_rows(text: str, name: str) -> list[FeeRow]:
    """Rows of one fee schedule file. Skipped: the header (first non-blank record, exactly
    COLUMNS) and blank records, nothing else: any other record that is not a valid row is an
    error naming file, line and column (a skipped row would be an amount silently lost)."""
    # A UTF-8 byte-order mark (Excel's "CSV UTF-8", Notepad) is not part of the header's
    # first cell: dropped, as Python's "utf-8-sig" codec does.
    text = text.removeprefix("\ufeff")
    rows: list[FeeRow] = []
    header_seen = False
    for where, record in csv_records(text, name, FeeScheduleError):
        if not any(cell.strip() for cell in record):
            continue
        if not header_seen:
            if record != COLUMNS:
                raise FeeScheduleError(f"{where}: header must be {','.join(COLUMNS)}")
            header_seen = True
            continue
        rows.append(_row(record, where))
    if not header_seen:
        raise FeeScheduleError(f"{name}: header must be {','.join(COLUMNS)}")
    return rows


def _row(record: list[str], where: str) -> FeeRow:
    if len(record) < len(COLUMNS):
        column = len(record) + 1
        raise FeeScheduleError(
            f"{where}, column {column} ({COLUMNS[column - 1]}): missing (the row has "
            f"{len(record)} of {len(COLUMNS)} comma-separated fields)"
        )
    if len(record) > len(COLUMNS):
        raise FeeScheduleError(f"{where}, column {len(COLUMNS) + 1}: more fields than the header")
    values = dict(zip(COLUMNS, record, strict=True))
    # Every column is checked; the first bad one (left to right) is named.
    problems: list[tuple[int, str]] = []
    year_ok = _YEAR.match(values["year"]) is not None  # pydantic's lax int takes "2_026", "+2026"
    if not year_ok:
        problems.append((2, f"{values['year'][:20]!r} is not a year"))
    row: FeeRow | None = None
    try:
        row = FeeRow.model_validate({**values, "year": int(values["year"]) if year_ok else 2000})
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            column = COLUMNS.index(field) + 1 if field in COLUMNS else 0
            problems.append((column, describe_errors([err])))
    if problems or row is None:
        column, text = min(problems)
        named = f", column {column} ({COLUMNS[column - 1]})" if column else ""
        raise FeeScheduleError(f"{where}{named}: {text}")
    return row
