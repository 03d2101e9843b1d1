"""Fee schedules: the per-unit amount of a code in a year for a payer, for `amount_at_risk`
when a line carries no `allowed_amount`. Data in `fee_schedule.csv` files, validated at load.

Columns: code, year, payer (a payer_id, or `*` for any payer), locality (free text naming the
fee schedule locality the amount is for, e.g. a MAC locality; informational), amount (decimal
string, USD, per unit), source (where the amount comes from). The shipped file has only the
header: amounts are published per locality and year (CMS MPFS, payer contracts) and none is
invented here; an operator adds the file of their locality to the rule set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.common import Usd
from schemas.decode import describe_errors

COLUMNS = ["code", "year", "payer", "locality", "amount", "source"]
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
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or list(reader.fieldnames) != COLUMNS:
        raise FeeScheduleError(f"{name}: header must be {','.join(COLUMNS)}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        if None in row:
            raise FeeScheduleError(f"{name} line {lineno}: more fields than the header")
        try:
            rows.append(FeeRow.model_validate({**row, "year": int(row["year"] or 0)}))
        except (ValidationError, ValueError) as exc:
            detail = describe_errors(exc.errors()) if isinstance(exc, ValidationError) else str(exc)
            raise FeeScheduleError(f"{name} line {lineno}: {detail}") from exc
    return rows
