"""Local times and dates (issue 20 item 2; docs/integration-hl7.md "Times and dates").

Sources: HL7 v2.5.1 ch. 2A.22 DTM (`YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]`; no offset: the
sender's local time zone); FHIR R4 datatypes 2.24.0.1 dateTime ("If hours and minutes are
specified, a time zone SHALL be populated"; a date has no time zone). The offsets expected below
come from the zones' rules, not from the code: US Central time is UTC-6, and UTC-5 from the second
Sunday of March to the first Sunday of November (15 U.S.C. 260a; 2026: 8 March - 1 November);
Germany is UTC+1, and UTC+2 from the last Sunday of March to the last Sunday of October (EU
Directive 2000/84/EC; 2026: 29 March - 25 October). Wisconsin keeps US Central time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from ehr import (
    ChargePart,
    DocumentationPart,
    EhrConfig,
    ProfileError,
    add_part,
    assemble,
    load_profile,
    parse_fhir,
    parse_hl7v2,
)
from ehr.hl7time import parse_dtm
from ehr.profile import DEFAULT_PROFILE_PATH
from tests.unit.ehr import fhirbuild as fb

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
EXE = str(Path(sys.executable).parent / "therapy-compliance")
KEY = b"test-key-0123456789abcdef"
CST, CDT = timezone(timedelta(hours=-6)), timezone(timedelta(hours=-5))
CET, CEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))


def config(zone: str) -> EhrConfig:
    """The shipped profile with `timezone` set, as an operator of these senders writes it."""
    profile = load_profile().model_copy(update={"timezone": zone})
    return EhrConfig(profile=profile, patient_key=KEY)


def mdm(signed: str, *, sent: str = "20260302170000", day: str = "20260302") -> bytes:
    """The daily-note fixture with TXA-22 PPN.15 (time signed), MSH-7 and TXA-4 (activity
    date) replaced; positions checked by hl7apy below."""
    raw = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes().decode()
    raw = raw.replace("^^20260302165500", f"^^{signed}").replace("20260302170000", sent)
    raw = raw.replace("|TX|20260302090000|", f"|TX|{day}090000|")
    return raw.encode()


def dft(day: str = "20260302") -> bytes:
    raw = (FIX / "dft_p03_pt_v1001.hl7").read_bytes().decode()
    return raw.replace("20260302", day).encode()


def checked_251(raw: bytes) -> Any:
    """hl7apy STRICT v2.5.1: the message is valid and the fields sit where the test says."""
    msg = parse_message(raw.decode(), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    msg.validate()
    return msg


def signed_at(raw: bytes, cfg: EhrConfig) -> datetime:
    part = parse_hl7v2(raw, cfg)
    assert isinstance(part, DocumentationPart), part
    (doc,) = part.documents
    assert doc.signed_at is not None
    return doc.signed_at


def visit(cfg: EhrConfig, *raws: bytes) -> dict[str, Any]:
    state = None
    for raw in raws:
        part = parse_hl7v2(raw, cfg)
        assert isinstance(part, ChargePart | DocumentationPart), part
        state = add_part(state, part)
    assert state is not None
    event = assemble(state)
    assert isinstance(event, dict), event
    return event


# ---- HL7 v2 --------------------------------------------------------------------------------


def test_a_note_signed_2030_in_chicago_keeps_its_offset_and_its_day() -> None:
    raw = mdm("202603022030")
    msg = checked_251(raw)
    assert msg.txa.txa_22.ppn_15.ts_1.to_er7() == "202603022030"  # TXA-22 PPN.15 time signed
    assert msg.txa.txa_17.to_er7() == "LA"  # TXA-17 (table 0271) legally authenticated
    at = signed_at(raw, config("America/Chicago"))
    assert at == datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # the same instant ...
    assert (at.utcoffset(), at.date()) == (CST.utcoffset(None), date(2026, 3, 2))  # ... on 3/2
    event = visit(config("America/Chicago"), dft(), raw)
    (doc,) = event["documents"]
    assert doc["signed_at"] == "2026-03-02T20:30:00-06:00"  # not 2026-03-03T02:30:00Z
    assert event["date_of_service"] == "2026-03-02"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/Chicago", "2026-03-02T20:30:00-06:00"),  # the clinic's own offset: kept
        ("UTC", "2026-03-03T02:30:00+00:00"),  # 20:30 + 6 h
        ("Europe/Berlin", "2026-03-03T03:30:00+01:00"),  # 02:30Z + 1 h (CET)
    ],
)
def test_a_time_in_another_offset_is_the_same_instant_on_the_clinics_clock(
    zone: str, expected: str
) -> None:
    # Was test_the_senders_own_offset_wins_over_the_profile_zone (the offset as written, whatever
    # the zone): the decision is now the clinic's zone's offset at that instant (review defect 2).
    raw = mdm("202603022030-0600")
    assert checked_251(raw).txa.txa_22.ppn_15.ts_1.to_er7() == "202603022030-0600"
    at = signed_at(raw, config(zone))
    assert at.isoformat() == expected
    assert at == datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # one instant in every zone


def test_a_note_written_in_utc_keys_the_same_series_day_as_its_charges() -> None:
    # The reviewer's case: a recurring account (PV1-2 R, HL7 table 0004) whose charges say FT1-4
    # 2026-03-02 and whose note an interface engine normalised to UTC: TXA-4 and TXA-22 PPN.15
    # 2026-03-03 01:30 +0000 = 2026-03-02 19:30 in Chicago (UTC-6). One visit, on 03-02.
    charges = dft().replace(b"PV1|1|O|", b"PV1|1|R|")
    note = mdm("20260303013000+0000", sent="20260303020000+0000").replace(b"PV1|1|O|", b"PV1|1|R|")
    note = note.replace(b"|TX|20260302090000|", b"|TX|20260303013000+0000|")
    for raw in (charges, note):
        assert checked_251(raw).pv1.pv1_2.to_er7() == "R"  # PV1-2 patient class
    msg = checked_251(note)
    assert msg.txa.txa_4.ts_1.to_er7() == "20260303013000+0000"  # TXA-4 activity date/time
    assert msg.txa.txa_22.ppn_15.ts_1.to_er7() == "20260303013000+0000"
    financial = [c for c in checked_251(charges).children if c.name == "DFT_P03_FINANCIAL"]
    assert financial[0].ft1.ft1_4.to_er7().startswith("20260302")  # FT1-4 transaction date
    cfg = config("America/Chicago")
    keys = set()
    for raw in (charges, note):
        part = parse_hl7v2(raw, cfg)
        assert isinstance(part, ChargePart | DocumentationPart), part
        keys.add(part.visit.text)
        assert part.date_of_service == date(2026, 3, 2)
    assert keys == {"CLINIC01:V1001@2026-03-02"}  # not two partial visits
    event = visit(cfg, charges, note)
    assert event["visit_id"] == "CLINIC01:V1001@2026-03-02"
    (doc,) = event["documents"]
    assert doc["signed_at"] == "2026-03-02T19:30:00-06:00"
    assert doc["document_date"] == "2026-03-02"


@pytest.mark.parametrize(
    ("zone", "signed", "offset"),
    [
        ("America/Chicago", "20260302142000", CST),  # Wisconsin, winter
        ("America/Chicago", "20260714142000", CDT),  # Wisconsin, summer
        ("Europe/Berlin", "20260302142000", CET),
        ("Europe/Berlin", "20260714142000", CEST),
    ],
)
def test_a_1420_note_keeps_the_local_offset_of_its_date(
    zone: str, signed: str, offset: timezone
) -> None:
    raw = mdm(signed, sent=signed, day=signed[:8])
    msg = checked_251(raw)
    assert msg.msh.msh_7.ts_1.to_er7() == signed  # MSH-7 date/time of message
    assert msg.txa.txa_4.ts_1.to_er7() == f"{signed[:8]}090000"  # TXA-4 activity date/time
    at = signed_at(raw, config(zone))
    assert (at.hour, at.minute, at.utcoffset()) == (14, 20, offset.utcoffset(None))
    event = visit(config(zone), dft(signed[:8]), raw)
    wall = f"{signed[:4]}-{signed[4:6]}-{signed[6:8]}T14:20:00"
    assert event["documents"][0]["signed_at"] == wall + str(offset)[3:]  # e.g. -06:00


def test_obx_times_keep_the_offset_and_part_versions_stay_utc_for_ordering() -> None:
    # TC-VERBAL-ORDER is a DTM OBX (profile [obx]); MSH-7 orders versions and is UTC.
    obx = "OBX|6|DTM|TC-VERBAL-ORDER^Verbal order^L||202603022215||||||F"
    raw = (mdm("202603022030").decode().rstrip("\r") + "\r" + obx + "\r").encode()
    msg = checked_251(raw)
    groups = [c for c in msg.children if c.name == "MDM_T02_OBXNTE_SUPPGRP"]
    assert groups[-1].obx.obx_3.ce_1.to_er7() == "TC-VERBAL-ORDER"
    assert groups[-1].obx.obx_5.to_er7() == "202603022215"
    assert groups[-1].obx.obx_11.to_er7() == "F"  # OBX-11 result status final
    part = parse_hl7v2(raw, config("America/Chicago"))
    assert isinstance(part, DocumentationPart)
    order = part.documents[0].verbal_order_at
    assert order is not None and order.isoformat() == "2026-03-02T22:15:00-06:00"
    assert part.version.at.isoformat() == "2026-03-02T23:00:00+00:00"  # 17:00 CST


def test_date_fields_are_the_dates_written() -> None:
    # FT1-4 and TXA-4 are the clinic's dates: no zone moves them (a 23:30 treatment stays 3/2).
    raw = dft().replace(b"20260302090500^20260302093000", b"20260302233000^20260302235900")
    charge = parse_hl7v2(raw, config("Pacific/Kiritimati"))  # UTC+14
    assert isinstance(charge, ChargePart) and charge.date_of_service == date(2026, 3, 2)


# ---- FHIR ----------------------------------------------------------------------------------


def fhir_bundle(doc_date: str) -> bytes:
    bundle = json.loads((FIX / "fhir_bundle_pt_v4004.json").read_text())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["date"] = doc_date
    return json.dumps(bundle).encode()


def fhir_doc(doc_date: str, zone: str = "UTC") -> Any:
    result = parse_fhir(fhir_bundle(doc_date), config(zone), datetime(2026, 3, 5, tzinfo=UTC))
    assert result.rejections == (), result.rejections
    (docs,) = [p for p in result.parts if isinstance(p, DocumentationPart) and p.documents]
    (doc,) = docs.documents
    return doc


def test_fhir_datetime_is_emitted_in_the_clinics_zone_and_dated_there() -> None:
    doc = fhir_doc("2026-03-04T20:30:00-06:00", zone="America/Chicago")
    assert doc.signed_at.isoformat() == "2026-03-04T20:30:00-06:00"  # the clinic's own: kept
    assert doc.signed_at.date() == date(2026, 3, 4)  # UTC would say 3/5
    # Was: kept as written (+02:00). Now the same instant on the clinic's clock: 14:20+02:00 is
    # 12:20Z, 07:20 in Chicago (CDT, UTC-5, in July).
    german = fhir_doc("2026-07-14T14:20:00+02:00", zone="America/Chicago")
    assert german.signed_at.isoformat() == "2026-07-14T07:20:00-05:00"


def test_fhir_instants_in_utc_are_dated_on_the_clinics_day() -> None:
    # DocumentReference.date 2026-03-04T02:30:00Z (an instant, as many servers write it) is
    # 2026-03-03 20:30 in Chicago (UTC-6 until 8 March); every dateTime with a time read as a
    # date (Encounter.period.start, Procedure.performedDateTime, Claim.item.servicedPeriod.start)
    # is dated there too: 01:00Z on 03-04 is 03-03 19:00 in Chicago. FHIR R4 datatypes 2.24.0.1.
    enc = fb.encounter()
    enc["period"] = {"start": "2026-03-04T01:00:00Z", "end": "2026-03-04T01:50:00Z"}
    claim = fb.claim(("97110", 2))
    for item in claim["item"]:
        del item["servicedDate"]
        item["servicedPeriod"] = {"start": "2026-03-04T01:00:00Z", "end": "2026-03-04T01:30:00Z"}
    proc = fb.procedure("pr-1", "97110", None, performedDateTime="2026-03-04T01:05:00Z")
    doc = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": "Patient/p1"},
        "date": "2026-03-04T02:30:00Z",
        "author": [{"reference": "Practitioner/pr1"}],
        "authenticator": {"reference": "Practitioner/pr1"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}],
        "context": {"encounter": [{"reference": "Encounter/e1"}]},
    }
    bundle = fb.collection(
        [fb.patient(), fb.practitioner(), fb.organization(), enc, claim, proc, doc]
    )
    result = parse_fhir(json.dumps(bundle), config("America/Chicago"), fb.NOW)
    assert result.rejections == (), result.rejections
    # The charges (Claim servicedPeriod.start) and the procedures (performedDateTime); the
    # DocumentReference's part names no date of service of its own (its document_date, below).
    dated = {type(p).__name__: p.date_of_service for p in result.parts if p.date_of_service}
    assert dated == {"ChargePart": date(2026, 3, 3), "DocumentationPart": date(2026, 3, 3)}
    (signed,) = [d for p in result.parts if isinstance(p, DocumentationPart) for d in p.documents]
    assert signed.signed_at.isoformat() == "2026-03-03T20:30:00-06:00"  # not ...04T02:30:00Z
    assert signed.document_date == date(2026, 3, 3)
    # The encounter's date when nothing else names one (Procedure without a time of its own).
    del proc["performedDateTime"]
    result = parse_fhir(json.dumps(bundle), config("America/Chicago"), fb.NOW)
    (procedures,) = [
        p
        for p in result.parts
        if isinstance(p, DocumentationPart) and p.source_id.startswith("fhir-procedures:")
    ]
    assert procedures.date_of_service == date(2026, 3, 3)


def test_fhir_chargeitem_occurrence_in_utc_is_dated_on_the_clinics_day() -> None:
    # ChargeItem.occurrenceDateTime 2026-03-04T01:30:00Z = 2026-03-03 19:30 in Chicago.
    item = {
        "resourceType": "ChargeItem",
        "id": "ci1",
        "status": "billable",
        "code": {"coding": [{"system": fb.CPT, "code": "97110"}]},
        "subject": {"reference": "Patient/p1"},
        "context": {"reference": "Encounter/e1"},
        "occurrenceDateTime": "2026-03-04T01:30:00Z",
        "quantity": {"value": 2},
        "performer": [{"actor": {"reference": "Practitioner/pr1"}}],
        "extension": [
            {
                "url": "urn:therapy-compliance:fhir:modifier",
                "valueCoding": {"system": fb.HCPCS, "code": "GP"},
            }
        ],
    }
    coverage = {
        "resourceType": "Coverage",
        "id": "cov1",
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"reference": "Organization/o1"}],
    }
    bundle = fb.collection([*fb.people(), coverage, item])
    for zone, day in (("America/Chicago", date(2026, 3, 3)), ("UTC", date(2026, 3, 4))):
        result = parse_fhir(json.dumps(bundle), config(zone), fb.NOW)
        charges = [p for p in result.parts if isinstance(p, ChargePart)]
        assert len(charges) == 1, (result.rejections, result.parts)
        assert charges[0].date_of_service == day, zone


def test_fhir_datetime_without_offset_is_refused_not_guessed() -> None:
    # DocumentReference.date is an instant (FHIR R4 "SHALL include a time zone"), dateTime the
    # same once it has a time: fhir.resources' patterns refuse the value, and so do we.
    result = parse_fhir(
        fhir_bundle("2026-03-04T20:30:00"), config("UTC"), datetime(2026, 3, 5, tzinfo=UTC)
    )
    assert result.parts == () and len(result.rejections) == 1
    assert result.rejections[0].reason == "not_fhir"
    assert "resource.date" in result.rejections[0].detail


# ---- the profile ---------------------------------------------------------------------------


def without_timezone(tmp_path: Path) -> Path:
    text = DEFAULT_PROFILE_PATH.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("timezone =")]
    assert len(lines) == len(text.splitlines()) - 1  # the shipped file writes it
    path = tmp_path / "no-zone.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_profile_without_timezone_is_refused_naming_file_and_setting(tmp_path: Path) -> None:
    path = without_timezone(tmp_path)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert str(path) in text and "timezone: missing" in text and '"UTC"' in text
    assert load_profile().timezone == "UTC"  # the shipped profile writes it explicitly


@pytest.mark.parametrize("program", ["convert", "worker"])
def test_convert_and_worker_refuse_to_start_without_timezone(tmp_path: Path, program: str) -> None:
    path = without_timezone(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "TC_EHR_PATIENT_KEY": KEY.decode(), "TC_EHR_PROFILE": str(path)}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    args = ["convert", "--from", "hl7", os.devnull] if program == "convert" else ["worker"]
    # The worker stops before it looks for a broker: none is configured or needed here.
    proc = subprocess.run([EXE, *args], capture_output=True, timeout=60, env=env, text=True)
    assert proc.returncode == 2, proc.stderr
    assert f"ehr profile {path}: timezone: missing" in proc.stderr
    assert "TC_EHR_PROFILE" in proc.stderr


# ---- no silent example profile (review defect 8) -------------------------------------------


def program_env(**extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "TC_EHR_PATIENT_KEY": KEY.decode(), **extra}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@pytest.mark.parametrize("program", ["worker", "mllp-gateway"])
def test_worker_and_gateway_refuse_the_ehr_path_without_a_profile(program: str) -> None:
    # The shipped profile is an example (timezone "UTC"): run silently it would turn 14:20 in
    # Wisconsin into 14:20Z. Both stop before they look for a broker (none is configured here).
    proc = subprocess.run(
        [EXE, program], capture_output=True, timeout=60, env=program_env(), text=True
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"therapy-compliance {program}: ")
    assert "needs TC_EHR_PROFILE" in lines[0] and "copy it, set `timezone`" in lines[0]


def test_convert_without_a_profile_says_it_uses_the_example_and_its_timezone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "visit.hl7"
    path.write_bytes(dft() + b"\n" + mdm("20260302165500"))
    args = [EXE, "convert", "--from", "hl7", str(path)]
    proc = subprocess.run(args, capture_output=True, timeout=60, env=program_env())
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1  # the visit, converted as before
    notes = [json.loads(ln) for ln in proc.stderr.splitlines()]
    (warning,) = [n for n in notes if n.get("warning") == "example_profile"]
    assert str(DEFAULT_PROFILE_PATH) in warning["detail"]
    assert "timezone 'UTC'" in warning["detail"] and "TC_EHR_PROFILE" in warning["detail"]
    # With a profile named, nothing to say.
    named = program_env(TC_EHR_PROFILE=str(DEFAULT_PROFILE_PATH))
    proc = subprocess.run(args, capture_output=True, timeout=60, env=named)
    assert proc.returncode == 0 and b"example_profile" not in proc.stderr


def test_a_charge_dated_with_a_utc_time_is_on_the_clinics_day() -> None:
    # FT1-4 (Transaction Date, DR of DTM) written with a time in UTC by an interface engine:
    # 2026-03-03 01:30 +0000 is 2026-03-02 19:30 in Chicago (UTC-6), so the charge belongs to
    # the clinic's 03-02, as its note does (HL7 v2.5.1 ch. 2A.22 DTM: the offset makes it an
    # instant; the rules count the clinic's calendar days).
    charges = dft().replace(b"PV1|1|O|", b"PV1|1|R|")
    charges = charges.replace(b"|20260302090500^20260302093000|", b"|20260303013000+0000|")
    charges = charges.replace(b"|20260302093000^20260302094500|", b"|20260303014500+0000|")
    financial = [c for c in checked_251(charges).children if c.name == "DFT_P03_FINANCIAL"]
    assert financial[0].ft1.ft1_4.to_er7().startswith("20260303013000+0000")  # FT1-4
    part = parse_hl7v2(charges, config("America/Chicago"))
    assert isinstance(part, ChargePart), part
    assert part.date_of_service == date(2026, 3, 2)
    assert part.visit.text == "CLINIC01:V1001@2026-03-02"
    # The same text on a UTC clinic's profile is the UTC day.
    utc = parse_hl7v2(charges, config("UTC"))
    assert isinstance(utc, ChargePart) and utc.date_of_service == date(2026, 3, 3)


def test_a_wall_time_the_spring_change_skips_carries_the_zones_offset_at_that_instant() -> None:
    # 2026-03-08 02:00 CST clocks jump to 03:00 CDT in Chicago (15 U.S.C. 260a: second Sunday
    # of March): 02:30 does not exist there. Read with the offset before the change (-06:00,
    # PEP 495 fold=0) it is 08:30Z, which the zone shows as 03:30-05:00: that is what is emitted,
    # never 02:30-06:00 (an offset the zone does not have at that instant).
    chicago = ZoneInfo("America/Chicago")
    got = parse_dtm("202603080230", chicago)
    assert got.astimezone(UTC) == datetime(2026, 3, 8, 8, 30, tzinfo=UTC)
    assert (got.hour, got.minute, got.utcoffset()) == (3, 30, timedelta(hours=-5))
    # The repeated hour in November (01:00-02:00 twice) is its first occurrence (CDT, -05:00).
    first = parse_dtm("202611010130", chicago)
    assert (first.hour, first.utcoffset()) == (1, timedelta(hours=-5))
