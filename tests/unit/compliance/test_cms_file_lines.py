"""Issue 20 item 10: a line of a CMS PTP, MUE or fee file that is not a valid row fails the load
naming the file, line and column; only the documented notice and header lines (and blank lines)
are skipped. The layouts are CMS's as quoted in ehr_ncci.md sec. 5.1 (PTP: tab-delimited, seven
columns, notice + title + header wrapped over four lines) and sec. 5.2 (MUE: CSV, AMA notice in
record 0, header, four columns); the fee file's columns are compliance/fees.py's COLUMNS. The
oracle is the line each test inserts: its number is counted from the fixture, not from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from compliance.fees import FeeScheduleError, parse_fee_rows
from compliance.mue import parse_mue
from compliance.ncci_ptp import NcciFileError, parse_ptp

FIX = Path(__file__).parents[2] / "fixtures" / "ncci"
PTP = FIX / "ccipra-v322r0-f4.TXT"
MUE = FIX / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv"
FEE = FIX / "fee_schedule_test.csv"


def _insert(raw: bytes, lineno: int, line: bytes, eol: bytes) -> bytes:
    """`raw` with `line` inserted so that it becomes physical line `lineno` (1-based)."""
    lines = raw.split(eol)
    return eol.join([*lines[: lineno - 1], line, *lines[lineno - 1 :]])


def _refusal(
    path: Path,
    lineno: int,
    line: bytes,
    eol: bytes,
    parse: Callable[[bytes], object],
    error: type[Exception],
) -> str:
    """The message of the `error` that `parse` raises for the fixture at `path` with `line`
    inserted as physical line `lineno`."""
    with pytest.raises(error) as exc:
        parse(_insert(path.read_bytes(), lineno, line, eol))
    return str(exc.value)


# PTP: the fixture's 6 preamble lines are lines 1-6 (sec. 5.1: notice, title, 4 header lines),
# so a line inserted as line 8 sits between data rows.
PTP_BAD = [
    # a row cut after column 1 (CMS column 2 missing)
    pytest.param(b"97140", 2, "missing", id="cut-after-column-1"),
    pytest.param(b"97140\t", 2, "missing", id="cut-after-column-1-with-tab"),
    # a 4-digit column-1 code (HCPCS/CPT codes are 5 characters)
    pytest.param(b"9714\t97530\t\t20200101\t*\t1\tMutually exclusive", 1, "'9714'", id="4-digit"),
    # spaces instead of tabs: the whole line is one cell
    pytest.param(
        b"97140 97530  20200101 * 1 Mutually exclusive procedures",
        1,
        "separated by spaces",
        id="spaces-not-tabs",
    ),
    # a header line that is not exactly CMS's (a third "Column" line)
    pytest.param(b"Column 1\tColumn 2\tEffective", 1, "'Column 1'", id="unknown-header"),
    pytest.param(b"97140\t97530\t\t20200101\t*\t1\tx\tEXTRA", 8, "more than 7", id="8-columns"),
    pytest.param(b"97140\t97530\tY\t20200101\t*\t1\tx", 3, "'Y'", id="column-3"),
]


@pytest.mark.parametrize(("line", "column", "text"), PTP_BAD)
def test_ptp_bad_line_names_file_line_and_column(line: bytes, column: int, text: str) -> None:
    message = _refusal(PTP, 8, line, b"\r\n", lambda raw: parse_ptp(raw, PTP.name), NcciFileError)
    assert message.startswith(f"{PTP.name} line 8, column {column}:"), message
    assert text in message


def test_ptp_skips_only_the_documented_preamble_and_blank_lines() -> None:
    raw = PTP.read_bytes()
    base = parse_ptp(raw, PTP.name)
    assert len(base.edits) == 11  # the fixture's data rows (lines 7-17)
    # blank lines (also tab-only, as a spreadsheet export writes them) carry no edit: skipped
    spaced = _insert(_insert(raw, 8, b"", b"\r\n"), 12, b"\t\t\t\t\t\t", b"\r\n")
    assert parse_ptp(spaced, PTP.name).edits[-1].column1 == base.edits[-1].column1
    assert len(parse_ptp(spaced, PTP.name).edits) == 11
    # the notice of another year is still the notice
    other_year = raw.replace(b"copyright 2025", b"copyright 2026")
    assert len(parse_ptp(other_year, PTP.name).edits) == 11


MUE_BAD = [
    pytest.param(b"97140", 2, "missing", id="cut-after-column-1"),
    pytest.param(b"9714,2,1 Line Edit,Clinical: Data", 1, "'9714'", id="4-digit"),
    pytest.param(
        b"97140;2;1 Line Edit;Clinical: Data", 1, "'97140;2;1 Line Edit;", id="semicolons"
    ),
    pytest.param(b"97140 2 1 Line Edit", 1, "other than commas", id="spaces-not-commas"),
    pytest.param(b"97750,+8,1 Line Edit,Clinical: Data", 2, "'+8'", id="signed-value"),
    pytest.param(b"97750,8,1 Line Edit,Clinical: Data,x", 5, "more than 4", id="5-columns"),
]


@pytest.mark.parametrize(("line", "column", "text"), MUE_BAD)
def test_mue_bad_line_names_file_line_and_column(line: bytes, column: int, text: str) -> None:
    # The fixture's notice is lines 1-7 and its header (a cell with an embedded newline) lines
    # 8-9 (sec. 5.2); line 11 sits between data rows.
    message = _refusal(MUE, 11, line, b"\r\n", lambda raw: parse_mue(raw, MUE.name), NcciFileError)
    assert message.startswith(f"{MUE.name} line 11, column {column}:"), message
    assert text in message


def test_mue_before_the_header_only_the_notice_is_skipped() -> None:
    raw = MUE.read_bytes()
    assert len(parse_mue(raw, MUE.name).rows) == 6
    # A data row before the header (line 8, after the 7-line notice) is not skipped as preamble.
    early = _insert(raw, 8, b"97750,8,1 Line Edit,Clinical: Data", b"\r\n")
    with pytest.raises(NcciFileError, match=rf"^{MUE.name} line 8, column 1: .*before the header"):
        parse_mue(early, MUE.name)
    # Any other text before the header is refused too; a blank record is not.
    with pytest.raises(NcciFileError, match=r"line 1, column 1"):
        parse_mue(b"MUE values Q1\r\n" + raw, MUE.name)
    assert len(parse_mue(b"\r\n" + raw, MUE.name).rows) == 6


FEE_BAD = [
    pytest.param(b"97110", 2, "missing", id="cut-after-column-1"),
    pytest.param(b"9711,2026,*,TEST,30.00,SYNTHETIC test", 1, "code", id="4-digit"),
    pytest.param(b"97110 2026 * TEST 30.00 SYNTHETIC", 2, "missing", id="spaces-not-commas"),
    pytest.param(b"97110,26,*,TEST,30.00,SYNTHETIC test", 2, "'26' is not a year", id="year"),
    pytest.param(b"97110,2027,*,TEST,30.00,SYNTHETIC test,x", 7, "more fields", id="7-fields"),
    pytest.param(b"code,year,payer,locality,amount,source", 1, "code", id="header-again"),
]


@pytest.mark.parametrize(("line", "column", "text"), FEE_BAD)
def test_fee_bad_line_names_file_line_and_column(line: bytes, column: int, text: str) -> None:
    # line 1 is the header
    message = _refusal(
        FEE, 4, line, b"\n", lambda raw: parse_fee_rows(raw.decode(), FEE.name), FeeScheduleError
    )
    assert message.startswith(f"{FEE.name} line 4, column {column}"), message
    assert text in message


def test_fee_line_numbers_count_blank_lines() -> None:
    raw = FEE.read_bytes()
    assert len(parse_fee_rows(raw.decode(), FEE.name)) == 9
    spaced = _insert(_insert(raw, 3, b"", b"\n"), 4, b"9711,2026,*,T,1.00,SYNTHETIC", b"\n")
    with pytest.raises(FeeScheduleError, match=rf"^{FEE.name} line 4, column 1 \(code\)"):
        parse_fee_rows(spaced.decode(), FEE.name)


def test_ptp_lines_are_split_on_line_feeds_only() -> None:
    # cp1252's ellipsis is byte 0x85, which Latin-1 decodes to NEL (U+0085), a line break for
    # str.splitlines(): inside a rationale it must stay part of its row.
    row = b"97140\t97530\t\t20200101\t*\t1\tMutually exclusive procedures \xb7 test row"
    assert row in PTP.read_bytes()
    raw = PTP.read_bytes().replace(row, row.replace(b"\xb7", b"\x85"))
    edits = parse_ptp(raw, PTP.name).edits
    assert len(edits) == 11
    assert [e.rationale for e in edits if e.column1 == "97140"] == [
        "Mutually exclusive procedures \x85 test row"
    ]


# Review defect 5: what loaded on main loads again (a UTF-8 byte-order mark, CR-only line
# ends), and a line that is not a documented preamble line is said to be so.
BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8 (Unicode ch. 23.8): Excel's "CSV UTF-8", Notepad
RATIONALE = "Mutually exclusive procedures \u00b7 test row"  # the fixture's byte 0xB7, Latin-1


def test_ptp_with_a_utf8_byte_order_mark_loads() -> None:
    raw = PTP.read_bytes()
    plain = parse_ptp(raw, PTP.name).edits
    assert len(plain) == 11
    # The mark before the Latin-1 bytes as CMS ships them, or before the file re-saved as UTF-8:
    # the same 11 edits, the rationale's middle dot read right both times.
    resaved = BOM + raw.decode("latin-1").encode("utf-8")
    for data in (BOM + raw, resaved):
        edits = parse_ptp(data, PTP.name).edits
        assert [(e.column1, e.column2, e.effective) for e in edits] == [
            (e.column1, e.column2, e.effective) for e in plain
        ]
        assert [e.rationale for e in edits if e.column1 == "97140"] == [RATIONALE]


def test_ptp_with_cr_only_line_ends_loads_and_counts_lines() -> None:
    # Decision: CR alone is a line end (old Mac text), as Python's csv reader takes it for the
    # MUE and fee files; lines are still counted one per CR.
    raw = PTP.read_bytes().replace(b"\r\n", b"\r")
    assert b"\n" not in raw
    assert len(parse_ptp(raw, PTP.name).edits) == 11
    bad = _insert(raw, 8, b"9714\t97530\t\t20200101\t*\t1\tx", b"\r")
    with pytest.raises(NcciFileError, match=rf"^{PTP.name} line 8, column 1: '9714'"):
        parse_ptp(bad, PTP.name)


def test_ptp_utf16_is_refused_by_name() -> None:
    raw = PTP.read_bytes().decode("latin-1").encode("utf-16")
    with pytest.raises(NcciFileError, match="UTF-16"):
        parse_ptp(raw, PTP.name)


def test_ptp_a_variant_preamble_line_is_refused_saying_what_was_expected() -> None:
    raw = PTP.read_bytes()
    # The title is line 2 of the fixture (sec. 5.1), written here with spaces CMS does not use.
    title = raw.replace(b"Column1/Column2 Edits", b"Column 1/Column 2 Edits")
    with pytest.raises(NcciFileError) as exc:
        parse_ptp(title, PTP.name)
    message = str(exc.value)
    assert message.startswith(f"{PTP.name} line 2, column 1:")
    assert "line 2 is not one of the documented header/notice lines of a CMS PTP file" in message
    assert "'Column1/Column2 Edits'" in message and "spaces, not tabs" not in message
    # The header's first line (line 3) with a longer third cell: the cell is named.
    header = raw.replace(b"*=in existence\tEffective", b"*=in existence prior to 1996\tEffective")
    with pytest.raises(NcciFileError) as exc:
        parse_ptp(header, PTP.name)
    message = str(exc.value)
    assert "line 3 is not one of the documented header/notice lines" in message
    assert "cell 3 is '*=in existence prior to 1996'" in message and "'*=in existence'" in message
    assert "spaces, not tabs" not in message
    # Text after the rows ("End of file", line 18): neither a row nor a documented line.
    tail = raw + b"End of file\r\n"
    with pytest.raises(NcciFileError, match="line 18 is not one of the documented") as exc:
        parse_ptp(tail, PTP.name)
    assert "spaces, not tabs" not in str(exc.value)


def test_ptp_the_spaces_hint_only_for_a_line_with_spaces_and_no_tab() -> None:
    spaced = b"97140 97530  20200101 * 1 x"
    tabbed = b"97140 X\t97530\t\t20200101\t*\t1\tx"  # a tab-separated row, a bad column 1
    for line, hinted in ((spaced, True), (tabbed, False)):
        with pytest.raises(NcciFileError) as exc:
            parse_ptp(_insert(PTP.read_bytes(), 8, line, b"\r\n"), PTP.name)
        assert ("(columns separated by spaces, not tabs?)" in str(exc.value)) is hinted


def test_mue_with_a_utf8_byte_order_mark_loads() -> None:
    raw = MUE.read_bytes()
    rows = parse_mue(raw, MUE.name).rows
    assert len(rows) == 6
    for data in (BOM + raw, BOM + raw.decode("latin-1").encode("utf-8")):
        assert parse_mue(data, MUE.name).rows == rows


def test_mue_a_variant_notice_or_text_after_the_rows_is_refused_naming_the_line() -> None:
    raw = MUE.read_bytes()
    variant = raw.replace(b"Current Procedural Terminology (CPT) codes", b"CPT codes")
    with pytest.raises(NcciFileError) as exc:
        parse_mue(variant, MUE.name)
    message = str(exc.value)
    assert message.startswith(f"{MUE.name} line 1, column 1:")
    assert "line 1 is not one of the documented header/notice lines of a CMS MUE file" in message
    assert "data row" not in message
    # The fixture's last record ends line 15 (notice 1-7, header 8-9, six rows 10-15).
    tail = raw + b'"CPT is a registered trademark",,,\r\n'
    with pytest.raises(NcciFileError) as exc:
        parse_mue(tail, MUE.name)
    message = str(exc.value)
    assert "line 16 is not one of the documented header/notice lines" in message
    assert "other than commas" not in message


def test_fee_file_with_a_utf8_byte_order_mark_loads() -> None:
    text = FEE.read_bytes().decode("utf-8")
    assert len(parse_fee_rows(text, FEE.name)) == 9
    assert parse_fee_rows("\ufeff" + text, FEE.name) == parse_fee_rows(text, FEE.name)
