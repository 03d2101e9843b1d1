"""CSV records with the file line each starts on, for the data files validated at load (MUE,
fee schedules): an error names the file and line a reader can find in an editor."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator


def csv_records(
    text: str, name: str, error: Callable[[str], Exception]
) -> Iterator[tuple[str, list[str]]]:
    """Each record of `text` with `where` ("<name> line N", N its first physical line: a quoted
    cell may span several lines). Text that is not CSV raises `error` naming the line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0  # last physical line of the previous record
    while True:
        try:
            record = next(reader, None)
        except csv.Error as exc:
            raise error(f"{name} line {reader.line_num}: not CSV: {exc}") from None
        if record is None:
            return
        where = f"{name} line {end + 1}"
        end = reader.line_num
        yield where, record
