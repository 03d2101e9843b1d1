"""Every third-party sample in ../shared/samples/ehr has an asserted outcome (docs/integration-hl7.md,
"The samples"): accepted with which fields, or rejected with which reason."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from ehr import (
    ChargePart,
    DocumentationPart,
    Rejection,
    add_part,
    conflict,
    load_config,
    parse_fhir,
    parse_hl7v2,
    parse_resources,
)
from ehr.dft import financial_groups, read_line
from ehr.fhir import validate
from ehr.fhirprocedures import procedure_minutes
from ehr.hl7tree import parse as parse_tree
from ehr.notes import read_signature
from ehr.profile import EhrConfig, load_profile
from tests.tools import EHR_SAMPLES, require_samples

SAMPLES = EHR_SAMPLES
HL7 = SAMPLES / "hl7v2"
FHIR = SAMPLES / "fhir"
KEY = b"test-key-0123456789abcdef"
CONFIG = load_config(KEY)
NOW = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _samples() -> None:
    require_samples(SAMPLES)  # missing: fails in CI (CI copies ../shared), skips elsewhere


def variant(**tables: object) -> EhrConfig:
    """The default profile with some tables replaced, as an operator would configure them."""
    data = load_profile().model_dump()
    for name, value in tables.items():
        section, _, key = name.partition("__")
        if key:
            data[section][key] = value
        else:
            data[section] = value
    return EhrConfig(profile=type(load_profile()).model_validate(data), patient_key=KEY)


def raw(name: str) -> bytes:
    return (HL7 / name).read_bytes()


def lines_of(name: str) -> list:
    msg = parse_tree((HL7 / name).read_bytes().decode("latin-1"))
    assert msg is not None
    return [read_line(g, i, CONFIG.profile) for i, g in enumerate(financial_groups(msg), start=1)]


def rejected(result: object) -> Rejection:
    assert isinstance(result, Rejection), result
    return result


# ---- HL7 v2 DFT^P03 -------------------------------------------------------------------------


def test_medplum_offspec_dft_reads_no_price_as_cpt_and_no_gp_from_pr1() -> None:
    rej = rejected(parse_hl7v2(raw("dft_p03_medplum_demo_bot_offspec.hl7"), CONFIG))
    assert rej.reason == "missing_field"  # no PV1 at all
    reasons = {p.reason for p in rej.problems}
    assert "no_procedure_code" in reasons
    assert "FT1-25 and FT1-7 hold no CPT/HCPCS code" in rej.detail
    (line,) = lines_of("dft_p03_medplum_demo_bot_offspec.hl7")
    assert line.cpt is None  # FT1-7 150.00 is a price; the CPT sits off-spec in FT1-22
    assert line.modifiers == []  # PR1-5 "GP" is a date field, never read as a modifier
    assert "150.00" not in rej.model_dump_json()


def test_webchart_dft_repeating_modifiers_rt_ga() -> None:
    (line,) = lines_of("dft_p03_mieweb_webchart_73630_rt_ga.hl7")
    assert (line.cpt, line.units, line.modifiers) == ("73630", 1, ["RT", "GA"])
    rej = rejected(parse_hl7v2(raw("dft_p03_mieweb_webchart_73630_rt_ga.hl7"), CONFIG))
    assert rej.problems[0].detail.startswith("PV1 segment is missing")
    assert {p.reason for p in rej.problems} >= {"missing_field", "not_therapy"}


def test_webchart_second_dft_trailing_spaces_and_no_modifiers() -> None:
    (line,) = lines_of("dft_p03_mieweb_webchart_76775.hl7")
    assert (line.cpt, line.units, line.modifiers, line.npi) == ("76775", 1, [], None)
    assert rejected(parse_hl7v2(raw("dft_p03_mieweb_webchart_76775.hl7"), CONFIG)).reason == (
        "missing_field"
    )


def test_allscripts_dft_cpt_only_in_ft1_25() -> None:
    (line,) = lines_of("dft_p03_allscripts_healthmatics_99214.hl7")
    assert (line.cpt, line.units, line.transaction_id) == ("99214", 1, "E8866")
    rej = rejected(parse_hl7v2(raw("dft_p03_allscripts_healthmatics_99214.hl7"), CONFIG))
    assert rej.problems[0].detail == "PV1-19 (visit number) is empty: it is the visit key"
    assert any("'MainOffi'" in p.detail and p.reason == "not_therapy" for p in rej.problems)


@pytest.mark.parametrize(
    "name", ["dft_p03_msft_fhirconverter_01.hl7", "dft_p03_msft_fhirconverter_02.hl7"]
)
def test_msft_v28_dft_not_therapy_by_default_and_accepted_when_configured(name: str) -> None:
    rej = rejected(parse_hl7v2(raw(name), CONFIG))
    assert rej.reason == "not_therapy"
    assert "department 'RAD-1'" in rej.detail
    assert any(p.reason == "unmapped_code" and "'BAV'" in p.detail for p in rej.problems)
    configured = variant(
        departments={"RAD-1": "PT"},
        payers={"BAV": {"payer_id": "BCBS-TX-HMO", "kind": "commercial"}},
    )
    part = parse_hl7v2(raw(name), configured)
    assert isinstance(part, ChargePart)
    assert part.visit.text == "GHHSFacility:40007716"
    assert part.rendering_npi == "9941339108"  # FT1-20 XCN.13 NPI
    assert part.date_of_service == date(2019, 11, 22)
    # FT1#1 71045 x2 modifier 26; FT1#2: FT1-7 626.2 (ICD-9) is not a CPT, FT1-25 99011 is.
    # (In _02 the PR1 code typo 7105 is never read: CPTs come from FT1 only.)
    assert [(ln.cpt, ln.units, ln.modifiers) for ln in part.lines] == [
        ("71045", 2, ["26"]),
        ("99011", 1, []),
    ]
    assert part.payer.payer_id == "BCBS-TX-HMO"


def test_msft_v28_dfts_reuse_one_control_id_for_other_content_a_conflict_at_the_join() -> None:
    # FHIR-Converter's DFT-P03-01 and -02 carry the same MSH-10 (MSG00001) and MSH-7 but other
    # lines (their bytes differ): one control id for two messages is a sender fault (HL7 v2.5.1
    # ch. 2.14.9.10, "uniquely identifies the message"), so the join keeps the first and refuses
    # the second (issue 20 item 6), where it used to settle them silently.
    first, second = (
        raw("dft_p03_msft_fhirconverter_01.hl7"),
        raw("dft_p03_msft_fhirconverter_02.hl7"),
    )
    assert first != second
    assert [m.split(b"\r", 1)[0].split(b"|")[9] for m in (first, second)] == [b"MSG00001"] * 2
    configured = variant(
        departments={"RAD-1": "PT"},
        payers={"BAV": {"payer_id": "BCBS-TX-HMO", "kind": "commercial"}},
    )
    a, b = parse_hl7v2(first, configured), parse_hl7v2(second, configured)
    assert isinstance(a, ChargePart) and isinstance(b, ChargePart)
    state = add_part(None, a)
    clash = conflict(state, b)
    assert clash is not None and clash.control_id == "MSG00001"
    assert add_part(state, b) == state  # the first stands


def test_ft1_segment_alone_is_not_a_message_but_its_line_reads() -> None:
    text = (HL7 / "ft1_segment_only_strive_labs_97001_gp.txt").read_bytes()
    assert rejected(parse_hl7v2(text, CONFIG)).reason == "not_hl7"
    wrapped = b"MSH|^~\\&|A|F|B|G|20130510120000||DFT^P03|1|P|2.3\r" + text.strip() + b"\r"
    msg = parse_tree(wrapped.decode())
    assert msg is not None
    (line,) = [read_line(g, 1, CONFIG.profile) for g in financial_groups(msg)]
    assert (line.cpt, line.units, line.modifiers) == ("97001", 1, ["GP"])
    assert line.date_of_service_text == "20130510"
    assert line.npi is None  # "UserPTID" is not an NPI


# ---- HL7 v2 MDM^T02 -------------------------------------------------------------------------


def test_mdm_evn_t10_with_msh9_t02_is_read_as_t02() -> None:
    name = "mdm_t02_msft_fhirconverter_01.hl7"
    rej = rejected(parse_hl7v2(raw(name), CONFIG))
    assert (rej.reason, rej.detail) == (
        "unmapped_code",
        "TXA-2 'DI' is not in the profile's [documents.types]",
    )
    part = parse_hl7v2(raw(name), variant(documents__types={"DI": {"kind": "other"}}))
    assert isinstance(part, DocumentationPart)
    # MSH-9 T02 governs (EVN-1 is backward compatibility only): an active document, not a
    # replacement of an earlier one.
    assert part.status == "active"
    assert part.visit.text == "XYZHOSPITAL:10000001"
    (doc,) = part.documents
    assert doc.doc_id == "1.2.840.317.5947431.51.20080131160038"
    assert doc.kind == "other"
    # TXA-17 AU + TXA-22 person with PPN.15 200801311600+0215 -> signed 13:45 UTC.
    assert doc.signed_at == datetime(2008, 1, 31, 13, 45, tzinfo=UTC)
    assert part.minutes_by_cpt == {} and part.total_timed_minutes is None


def test_mdm_txa17_in_progress_is_not_signed() -> None:
    name = "mdm_t02_msft_fhirconverter_03.hl7"
    rej = rejected(parse_hl7v2(raw(name), CONFIG))
    assert rej.detail == "PV1-19 (visit number) is empty: it is the visit key"
    msg = parse_tree(raw(name).decode("ascii"))
    assert msg is not None
    txa = msg.first("TXA")
    assert txa is not None
    assert read_signature(txa, CONFIG.profile, []).signed_at is None
    # With a visit number added to PV1 (the only change), it is an unsigned discharge summary.
    fixed = (
        raw(name)
        .replace(b"PV1|1|O||28b|", b"PV1|1|O||28b|")
        .replace(b"|MED||||||||||||||||||", b"|MED|||||||||V77||||||||", 1)
    )
    part = parse_hl7v2(fixed, CONFIG)
    assert isinstance(part, DocumentationPart), part
    assert part.visit.visit_number == "V77"
    (doc,) = part.documents
    assert (doc.kind, doc.signed_at) == ("discharge_summary", None)


def test_mdm_outpatient_visit_note_signed_au_with_ppn15() -> None:
    name = "mdm_t02_outpatient_visit_note_ov.hl7"
    assert rejected(parse_hl7v2(raw(name), CONFIG)).reason == "unmapped_code"
    part = parse_hl7v2(raw(name), variant(documents__types={"OV": {"kind": "daily_note"}}))
    assert isinstance(part, DocumentationPart)
    assert part.visit.text == "SendApp:17872"
    assert part.source_id == "mdm:OV17872"
    (doc,) = part.documents
    assert doc.signed_at == datetime(2019, 2, 2, 14, 20, tzinfo=UTC)  # profile zone UTC
    assert doc.document_date == date(2019, 2, 2)  # TXA-4
    assert part.author_npi is None  # 543453 is not an NPI


# ---- HL7 v2 ORU^R01 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "oru_r01_hl7_v24_standard_example_glucose.hl7",
        "oru_r01_nist_elr_251_testcase1.hl7",
        "oru_r01_pathology_report_tx_v231.hl7",
    ],
)
def test_oru_without_therapy_minutes_is_not_therapy(name: str) -> None:
    rej = rejected(parse_hl7v2(raw(name), CONFIG))
    assert rej.reason == "not_therapy"
    assert "no OBX with a code of the profile's [obx] table" in rej.detail


# ---- FHIR -----------------------------------------------------------------------------------


def fhir(name: str, config: EhrConfig = CONFIG):  # type: ignore[no-untyped-def]
    return parse_fhir((FHIR / name).read_bytes(), config, NOW)


@pytest.mark.parametrize(
    ("name", "reason", "text"),
    [
        (
            "carin-bb-2.0.0_ExplanationOfBenefit-EOBProfessional1_cpt97110.json",
            "not_a_visit",
            "ExplanationOfBenefit is a payer's adjudication",
        ),
        (
            "davinci-pas-2.2.1_Claim-MedicalServicesAuthorizationExample_99212_preauth.json",
            "not_a_visit",
            "Claim.use 'preauthorization' is not 'claim'",
        ),
        ("r4spec_chargeitem-example.json", "no_procedure_code", "ChargeItem.code has no CPT"),
        ("r4spec_claim-example-cms1500-medical_cpt.json", "missing_field", "quantity is absent"),
        ("r4spec_documentreference-example.json", "unmapped_code", "loinc.org|34108-1"),
        ("r4spec_encounter-example-f202-20130128_amb.json", "not_a_visit", "no Claim"),
        ("uscore9_encounter-example-1_amb_cpt99211.json", "not_a_visit", "no Claim"),
        ("r4spec_procedure-example-HCBS_hcpcs_T1019.json", "missing_field", "Procedure.encounter"),
        ("r4spec_procedure-example-physical-therapy.json", "no_procedure_code", "snomed"),
        ("r4spec_procedure-example-f201-tpf_performedPeriod.json", "no_procedure_code", "snomed"),
    ],
)
def test_fhir_sample_outcome(name: str, reason: str, text: str) -> None:
    result = fhir(name)
    assert result.parts == ()
    (rej,) = result.rejections
    assert rej.reason == reason
    assert text in rej.detail


def test_cms1500_claim_cpt_is_read_but_it_names_no_encounter() -> None:
    (rej,) = fhir("r4spec_claim-example-cms1500-medical_cpt.json").rejections
    assert "no CPT" not in rej.detail  # 62264 under the CPT URI is recognised
    assert "Claim.item[1].encounter is absent" in rej.detail


def test_f201_performed_period_gives_56_minutes() -> None:
    data = json.loads((FHIR / "r4spec_procedure-example-f201-tpf_performedPeriod.json").read_text())
    proc = validate(data)
    assert procedure_minutes(proc, CONFIG) == 56  # type: ignore[arg-type]
    # With a CPT coding added and its encounter f202 alongside, it is documentation: 56 minutes
    # for the code and Encounter.length 56 min as the total treatment time.
    data["code"]["coding"].append({"system": "http://www.ama-assn.org/go/cpt", "code": "97530"})
    enc = json.loads((FHIR / "r4spec_encounter-example-f202-20130128_amb.json").read_text())
    result = parse_resources([data, enc], CONFIG, NOW)
    assert result.rejections == ()
    (part,) = result.parts
    assert isinstance(part, DocumentationPart)
    assert part.visit.text == "FHIR:f202"
    assert part.minutes_by_cpt == {"97530": 56}
    assert part.total_treatment_minutes == 56
    assert part.date_of_service == date(2013, 1, 28)


def test_hcbs_hcpcs_t1019_under_the_https_system_is_a_procedure_code() -> None:
    (rej,) = fhir("r4spec_procedure-example-HCBS_hcpcs_T1019.json").rejections
    assert rej.reason == "missing_field"  # got past the code check; no encounter to key it


def test_synthea_snomed_only_therapy_is_rejected_with_reasons() -> None:
    resources = [
        json.loads(line)
        for f in sorted((SAMPLES / "synthea").glob("*.ndjson"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    result = parse_resources(resources, CONFIG, NOW)
    assert result.parts == ()
    by_reason: dict[str, int] = {}
    for rej in result.rejections:
        by_reason[rej.reason] = by_reason.get(rej.reason, 0) + 1
    # 16 Procedures coded SNOMED CT only (no CPT, no units, no modifier); 12 DocumentReferences
    # typed LOINC 34117-2/34111-5 + 51847-2, not in the profile's document types.
    assert by_reason == {"no_procedure_code": 16, "unmapped_code": 12}
    # Their periods would give minutes (15 to 58 whole minutes; the longest session is 58 min 33
    # s, and partial minutes are not rounded up): the minutes are there, the billing code is not.
    procs = [validate(r) for r in resources if r["resourceType"] == "Procedure"]
    minutes = sorted(procedure_minutes(p, CONFIG) or 0 for p in procs)  # type: ignore[arg-type]
    assert minutes[0] == 15 and minutes[-1] == 58
