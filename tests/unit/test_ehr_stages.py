"""The EHR stream stages without a broker (streams/ehr_stages.py): parsing re-keys by patient_ref
and dead-letters what the profile rejects; the join emits each assembly once, waits for the
other half, emits it partial after TC_JOIN_WAIT_S, and forgets visits after the retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from ehr import load_config
from schemas.ehr_deadletter import EhrDeadLetter
from schemas.visit import TherapyVisitCompleted
from streams.ehr_stages import EhrParser, VisitJoiner
from streams.metrics import Metrics
from streams.processor import Output, Record
from streams.settings import Settings

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ehr"
KEY = "unit-test-key-0123456789"
SETTINGS = Settings.from_env({"TC_EHR_PATIENT_KEY": KEY, "TC_JOIN_WAIT_S": "600"})
DFT = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
MDM = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()


class DictStore:
    def __init__(self) -> None:
        self.data: dict[tuple[int, bytes], bytes] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get((partition, key))

    def put(self, partition: int, key: bytes, value: bytes | None) -> Output:
        if value is None:
            self.data.pop((partition, key), None)
        else:
            self.data[(partition, key)] = value
        return Output("changelog", key, value, partition)

    def items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        for (p, k), v in list(self.data.items()):
            if p == partition:
                yield k, v


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def parsed(raw: bytes) -> list[Output]:
    parser = EhrParser(SETTINGS, load_config(KEY), Metrics())
    return parser.handle(Record(SETTINGS.topic_hl7_inbound, 1, 7, b"any", raw, 1_772_470_800_000))


def part_record(out: Output, offset: int) -> Record:
    return Record(SETTINGS.topic_ehr_parts, 2, offset, out.key, out.value, None)


def test_parts_are_rekeyed_by_patient_ref_and_rejects_dead_lettered() -> None:
    [charges] = parsed(DFT)
    assert charges.topic == SETTINGS.topic_ehr_parts
    body = orjson.loads(charges.value or b"")
    assert charges.key == body["patient_ref"].encode() and body["part"] == "charges"
    [letter] = parsed(DFT.replace(b"DFT^P03^DFT_P03", b"ADT^A01^ADT_A01"))
    assert letter.topic == SETTINGS.topic_ehr_deadletter
    dead = EhrDeadLetter.model_validate_json(letter.value or b"")
    assert dead.reason == "unsupported_type" and dead.source.offset == 7
    assert dead.source.control_id == "DFT-1001-1"


def test_the_join_emits_once_when_both_halves_are_there_in_any_order() -> None:
    [charges], [docs] = parsed(DFT), parsed(MDM)
    for order in ([charges, docs], [docs, charges]):
        store, clock = DictStore(), Clock()
        joiner = VisitJoiner(SETTINGS, Metrics(), store, clock)
        emitted = []
        for i, out in enumerate([*order, *order]):  # then both re-delivered
            emitted += [
                o for o in joiner.handle(part_record(out, i)) if o.topic == SETTINGS.topic_visits
            ]
        assert len(emitted) == 1
        visit = TherapyVisitCompleted.model_validate_json(emitted[0].value or b"")
        assert emitted[0].key == visit.patient_ref.encode()
        assert [(s.cpt, s.units, s.minutes) for s in visit.services] == [
            ("97110", 2, 33),
            ("97140", 1, 7),
        ]


def test_a_lone_half_is_emitted_partial_after_the_wait_then_completed() -> None:
    [charges], [docs] = parsed(DFT), parsed(MDM)
    store, clock = DictStore(), Clock()
    joiner = VisitJoiner(SETTINGS, Metrics(), store, clock)
    assert [o.topic for o in joiner.handle(part_record(charges, 0))] == ["changelog"]
    clock.now += timedelta(seconds=599)
    assert joiner.expire({2}) == []  # not yet
    clock.now += timedelta(seconds=2)
    [visit_out, state_out] = joiner.expire({2})
    partial = orjson.loads(visit_out.value or b"")
    assert partial["parts_missing"] == ["documentation"] and state_out.topic == "changelog"
    assert joiner.expire({2}) == []  # emitted once
    later = [o for o in joiner.handle(part_record(docs, 1)) if o.topic == SETTINGS.topic_visits]
    complete = orjson.loads(later[0].value or b"")
    assert "parts_missing" not in complete and complete["event_id"] != partial["event_id"]
    assert complete["visit_id"] == partial["visit_id"]


def test_visits_untouched_beyond_the_retention_are_dropped() -> None:
    [charges], [docs] = parsed(DFT), parsed(MDM)
    store, clock = DictStore(), Clock()
    joiner = VisitJoiner(SETTINGS, Metrics(), store, clock)
    joiner.handle(part_record(charges, 0))
    joiner.handle(part_record(docs, 1))
    assert len(store.data) == 1
    clock.now += timedelta(days=SETTINGS.join_retention_days, seconds=1)
    [tombstone] = joiner.expire({2})
    assert tombstone.value is None and store.data == {}


def test_a_part_whose_key_is_not_its_patient_ref_is_dead_lettered() -> None:
    [charges] = parsed(DFT)
    joiner = VisitJoiner(SETTINGS, Metrics(), DictStore(), Clock())
    rec = Record(SETTINGS.topic_ehr_parts, 0, 3, b"P-someone-else", charges.value, None)
    [letter] = joiner.handle(rec)
    assert letter.topic == SETTINGS.topic_ehr_deadletter
    assert "patient_ref" in EhrDeadLetter.model_validate_json(letter.value or b"").detail


def test_a_fhir_bundle_with_both_halves_is_emitted_once_with_all_its_documentation() -> None:
    """The bundle's parts leave the parse stage documentation first, charges last, so the join
    emits the visit once, with the note (what `convert` gives), not first without it."""
    bundle = (FIX / "fhir_bundle_pt_v4004.json").read_bytes()
    parser = EhrParser(SETTINGS, load_config(KEY), Metrics())
    outs = parser.handle(Record(SETTINGS.topic_fhir_inbound, 0, 1, b"k", bundle, 1_772_470_800_000))
    kinds = [orjson.loads(o.value or b"")["part"] for o in outs]
    assert kinds == ["documentation", "documentation", "charges"]  # procedures, note, charges
    joiner = VisitJoiner(SETTINGS, Metrics(), DictStore(), Clock())
    emitted = [
        o
        for i, out in enumerate(outs)
        for o in joiner.handle(part_record(out, i))
        if o.topic == SETTINGS.topic_visits
    ]
    assert len(emitted) == 1
    visit = orjson.loads(emitted[0].value or b"")
    assert [d["kind"] for d in visit["documents"]] == ["progress_report"]
    assert visit["services"][0]["minutes"] == 33  # the procedures' minutes are in too
