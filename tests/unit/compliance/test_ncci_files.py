"""Loaders of the CMS NCCI files on fixtures in the official layouts (ehr_ncci.md sec. 5.1 and
5.2; tests/fixtures/ncci/README.md says which rows are CMS data and which are synthetic)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from compliance.mue import Adjudication, MueTable, mue_effective_date, parse_mue
from compliance.ncci_ptp import ModifierIndicator, NcciFileError, PtpTable, parse_ptp

FIX = Path(__file__).parents[2] / "fixtures" / "ncci"
V322 = FIX / "ccipra-v322r0-f4.TXT"
V323 = FIX / "ccipra-v323r0-f4.TXT"
MUE_JAN = FIX / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv"
MUE_APR = FIX / "MCR_MUE_PractitionerServices_Eff_04-01-2026.csv"


def ptp(path: Path = V322) -> PtpTable:
    return PtpTable([parse_ptp(path.read_bytes(), path.name)])


def test_fixture_bytes_are_latin1_with_crlf_so_utf8_would_fail() -> None:
    raw = V322.read_bytes()
    assert b"\r\n" in raw and b"\xa9" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_ptp_data_rows_found_by_shape_past_the_wrapped_header() -> None:
    f = parse_ptp(V322.read_bytes(), V322.name)
    assert f.version == (322, 0)
    # 11 data rows; the 6 preamble lines (copyright, title, 4-line header) are not rows.
    assert len(f.edits) == 11
    first = f.edits[0]
    assert (first.column1, first.column2, first.effective, first.deletion) == (
        "0001A",
        "0591T",
        date(2022, 1, 1),
        date(2023, 12, 31),
    )
    assert first.indicator is ModifierIndicator.ALLOWED
    assert "\xb7" in f.edits[5].rationale  # Latin-1 text decoded, not mangled


def test_ptp_star_deletion_means_still_active() -> None:
    t = ptp()
    e = t.edit_on("0001U", "0030U", date(2040, 1, 1))
    assert e is not None and e.deletion is None
    assert t.edit_on("0001U", "0030U", date(2018, 6, 30)) is None  # before its effective date


def test_ptp_deletion_date_is_the_last_day_in_force() -> None:
    # Deletion 20231231 (a quarter end, as CMS publishes them): in force on it, not after.
    t = ptp()
    assert t.edit_on("0001A", "0591T", date(2023, 12, 31)) is not None
    assert t.edit_on("0001A", "0591T", date(2024, 1, 1)) is None


def test_ptp_effective_equal_deletion_with_9_is_never_in_force() -> None:
    t = ptp()
    assert t.edit_on("0001A", "90473", date(2022, 1, 1)) is None
    assert t.edit_on("97112", "97161", date(2020, 1, 1)) is None


def test_ptp_same_pair_twice_with_disjoint_windows() -> None:
    t = ptp()
    assert t.edit_on("13121", "13120", date(1996, 1, 1)) is None  # the indicator-9 window
    e = t.edit_on("13121", "13120", date(2026, 3, 2))
    assert e is not None and e.indicator is ModifierIndicator.NOT_ALLOWED
    e1 = t.edit_on("97110", "97164", date(2025, 12, 31))
    e2 = t.edit_on("97110", "97164", date(2026, 1, 1))
    assert e1 is not None and e1.indicator is ModifierIndicator.ALLOWED
    assert e2 is not None and e2.indicator is ModifierIndicator.NOT_ALLOWED


def test_ptp_indicator_9_is_never_bypassable_nor_an_edit_and_0_has_no_bypass() -> None:
    t = ptp()
    e0 = t.edit_on("13121", "13120", date(2026, 3, 2))
    e1 = t.edit_on("97140", "97530", date(2026, 3, 2))
    assert e0 is not None and not e0.bypassed_by(["59", "XU"])
    assert e1 is not None and e1.bypassed_by(["GP", "59"]) and e1.bypassed_by(["XU"])
    assert not e1.bypassed_by(["GP", "KX", "76"])


def test_ptp_newer_quarter_wins_for_a_pair_it_restates() -> None:
    # v322: 97116/97150 in force Jan-Jun 2024; v323 deletes it retroactively (eff = del, 9).
    old = ptp()
    assert old.edit_on("97116", "97150", date(2024, 3, 1)) is not None
    both = PtpTable([parse_ptp(p.read_bytes(), p.name) for p in (V323, V322)])
    assert both.edit_on("97116", "97150", date(2024, 3, 1)) is None
    # Pairs the newer part does not restate keep the older file's rows.
    assert both.edit_on("13121", "13120", date(2026, 3, 2)) is not None


def test_ptp_medicaid_layout_rejected_with_a_clear_message() -> None:
    path = FIX / "medicaid-ccipra-v322r0-f4.TXT"
    with pytest.raises(NcciFileError, match="Medicaid NCCI PTP layout"):
        parse_ptp(path.read_bytes(), path.name)


def test_ptp_rejects_bad_rows_names_and_hospital_files() -> None:
    good = V322.read_bytes()
    with pytest.raises(NcciFileError, match="version from its name"):
        parse_ptp(good, "edits.txt")
    with pytest.raises(NcciFileError, match="hospital outpatient"):
        parse_ptp(good, "ccioph-v322r0-f4.TXT")
    bad = good.replace(b"20180701\t*\t1", b"20180701\t*\t7")
    with pytest.raises(NcciFileError, match=r"line 9, column 6: modifier indicator '7'"):
        parse_ptp(bad, V322.name)
    bad = good.replace(b"20220101\t20231231", b"20220101\t2023123")
    with pytest.raises(NcciFileError, match="line 7, column 5: deletion date"):
        parse_ptp(bad, V322.name)
    preamble = b"\r\n".join(good.split(b"\r\n")[:6])  # notice, title, 4-line header
    with pytest.raises(NcciFileError, match="no PTP edit rows"):
        parse_ptp(preamble, V322.name)


def test_mue_multiline_notice_embedded_newline_header_and_adjudication() -> None:
    f = parse_mue(MUE_JAN.read_bytes(), MUE_JAN.name)
    assert f.effective == date(2026, 1, 1)
    assert set(f.rows) == {"0001U", "0002M", "97110", "97140", "97530", "97012"}
    assert f.rows["0001U"].adjudication is Adjudication.DATE_OF_SERVICE_POLICY
    assert f.rows["0002M"].adjudication is Adjudication.DATE_OF_SERVICE_CLINICAL
    assert f.rows["97140"].adjudication is Adjudication.LINE
    assert f.rows["97012"].value == 0  # 0 is a real value, not "no limit"
    assert f.rows["0002M"].rationale == "Nature of Analyte"


def test_mue_effective_date_only_from_the_file_name() -> None:
    assert mue_effective_date("MCR_MUE_PractitionerServices_Eff_07-01-2026.csv") == date(2026, 7, 1)
    with pytest.raises(NcciFileError, match="only in the name"):
        mue_effective_date("mue_2026q3.csv")
    with pytest.raises(NcciFileError, match="not a valid date"):
        mue_effective_date("MCR_MUE_PractitionerServices_Eff_13-01-2026.csv")


def test_mue_file_in_force_on_the_date_of_service() -> None:
    t = MueTable(
        [parse_mue(p.read_bytes(), p.name) for p in (MUE_APR, MUE_JAN)]  # any load order
    )
    assert t.on("97110", date(2025, 12, 31)) is None  # before any loaded file
    jan = t.on("97110", date(2026, 3, 31))
    apr = t.on("97110", date(2026, 4, 1))
    assert jan is not None and jan.value == 4 and jan.source == MUE_JAN.name
    assert apr is not None and apr.value == 6
    assert t.on("97530", date(2026, 4, 1)) is None  # no row in the April file: no check


def test_mue_rejects_other_settings_and_bad_rows(tmp_path: Path) -> None:
    opd = (FIX / "MCR_MUE_OutpatientHospitalServices_Eff_01-01-2026.csv").read_bytes()
    with pytest.raises(NcciFileError, match="Outpatient Hospital Services MUE Values"):
        parse_mue(opd, MUE_JAN.name)
    raw = MUE_JAN.read_bytes()
    with pytest.raises(NcciFileError, match="does not match"):
        parse_mue(raw.replace(b"1 Line Edit", b"1 Date of Service Edit: Policy"), MUE_JAN.name)
    with pytest.raises(NcciFileError, match="not 1, 2 or 3"):
        parse_mue(raw.replace(b"1 Line Edit", b"4 Line Edit"), MUE_JAN.name)
    with pytest.raises(NcciFileError, match="not an integer"):
        parse_mue(raw.replace(b"97140,2,", b"97140,two,"), MUE_JAN.name)
    with pytest.raises(NcciFileError, match=r"line 1, column 1: .*a data row before the header"):
        parse_mue(b"0001U,1,2 Date of Service Edit: Policy,x\r\n", MUE_JAN.name)
    notice = raw[: raw.index(b'"HCPCS/')]
    with pytest.raises(NcciFileError, match="no 'HCPCS/CPT Code' header"):
        parse_mue(notice, MUE_JAN.name)
    with pytest.raises(NcciFileError, match="two MUE files effective"):
        f = parse_mue(raw, MUE_JAN.name)
        MueTable([f, f])
