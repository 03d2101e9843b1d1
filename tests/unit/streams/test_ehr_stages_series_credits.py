"""Issue 20 items 1 and 8 in the stream stages without a broker: the parser publishes one part
per date of a recurring account's DFT (PV1-2 `R`, HL7 table 0004); the join applies a credit
(FT1-6 `CD`, table 0017) as a correction of the visit and dead-letters, counted, one that cannot
apply (the visit stays as it was)."""

from __future__ import annotations

import orjson
from prometheus_client import generate_latest

from schemas.ehr_deadletter import EhrDeadLetter
from schemas.visit import TherapyVisitCompleted
from streams.processor import Output
from tests.unit.streams.test_ehr_stages import DFT, FIX, MDM, SETTINGS, Join, parsed, part_record

CREDIT = (FIX / "dft_p03_credit.hl7").read_bytes()


def visits(outs: list[Output]) -> list[TherapyVisitCompleted]:
    return [
        TherapyVisitCompleted.model_validate_json(o.value or b"")
        for o in outs
        if o.topic == SETTINGS.topic_visits
    ]


def test_a_recurring_accounts_dft_over_two_dates_is_published_as_two_parts() -> None:
    # The fixture's two lines moved to two dates (FT1-4) of a recurring account (PV1-2 R).
    series = (
        DFT.replace(b"PV1|1|O|", b"PV1|1|R|")
        .replace(b"FT1|2|TX2||20260302093000", b"FT1|2|TX2||20260303093000")
        .replace(b"^20260302094500|", b"^20260303094500|")
    )
    outs = parsed(series)
    bodies = [orjson.loads(o.value or b"") for o in outs]
    assert [o.topic for o in outs] == [SETTINGS.topic_ehr_parts] * 2
    assert [(b["visit"]["visit_number"], b["date_of_service"]) for b in bodies] == [
        ("V1001@2026-03-02", "2026-03-02"),
        ("V1001@2026-03-03", "2026-03-03"),
    ]
    assert [[ln["cpt"] for ln in b["lines"]] for b in bodies] == [["97110"], ["97140"]]


def test_the_join_applies_a_credit_and_dead_letters_one_that_cannot_apply() -> None:
    [charges], [docs], [credit] = parsed(DFT), parsed(MDM), parsed(CREDIT)
    assert orjson.loads(credit.value or b"")["part"] == "credit"
    join = Join()
    (first,) = visits(join.handle(part_record(charges, 0)) + join.handle(part_record(docs, 1)))
    assert [(s.cpt, s.units) for s in first.services] == [("97110", 2), ("97140", 1)]
    # dft_p03_credit.hl7 credits 97140 x1 GP 59: its line goes to 0 units and leaves the bill;
    # the note's 7 minutes of 97140 stay as a documented, unbilled (0-unit) line.
    (corrected,) = visits(join.handle(part_record(credit, 2)))
    assert corrected.visit_id == first.visit_id and corrected.event_id != first.event_id
    assert [(s.cpt, s.units, s.minutes) for s in corrected.services] == [
        ("97110", 2, 33),
        ("97140", 0, 7),
    ]
    assert visits(join.handle(part_record(credit, 3))) == []  # re-delivered: counted once
    too_much = (
        CREDIT.replace(b"DFT-1001-3", b"DFT-1001-4")
        .replace(b"20260302190000||DFT", b"20260302200000||DFT")
        .replace(b"|97140^Manual therapy^C4|||1|", b"|97110^Therapeutic exercise^C4|||3|")
        .replace(b"|97140^Manual therapy^C4|GP^^HCPCS~59^^CPTM", b"|97110^^C4|GP^^HCPCS")
    )
    [refused] = parsed(too_much)
    [letter] = join.handle(part_record(refused, 4))
    assert letter.topic == SETTINGS.topic_ehr_deadletter
    dead = EhrDeadLetter.model_validate_json(letter.value or b"")
    assert dead.reason == "credit_below_zero" and "below zero" in dead.detail
    assert dead.source.control_id == "DFT-1001-4"
    text = generate_latest(join.joiner.metrics.registry).decode()
    assert 'therapy_compliance_ehr_rejected_total{reason="credit_below_zero"} 1.0' in text
    assert visits(join.handle(part_record(credit, 5))) == []  # the visit stayed as corrected
