"""The EHR stream stages without a broker (streams/ehr_stages.py): parsing re-keys by patient_ref
and dead-letters what the profile rejects; the join emits each assembly once, waits for the
other half, emits it partial after TC_JOIN_WAIT_S, and forgets visits after the retention."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from ehr import load_config
from runtime.settings import Settings
from schemas.ehr_deadletter import EhrDeadLetter
from schemas.visit import TherapyVisitCompleted
from streams.ehr_stages import EhrDeadLetters, EhrParser, VisitJoiner
from streams.metrics import Metrics
from streams.processor import Output, Record, guarded
from streams.transaction import Chain, DictStore, Tag, commit_now

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "ehr"
KEY = "unit-test-key-0123456789"
SETTINGS = Settings.from_env({"TC_EHR_PATIENT_KEY": KEY, "TC_JOIN_WAIT_S": "600"})
DFT = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
MDM = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Join:
    """The joiner over a dict store, each record (and each expiry run) a transaction written to
    the store at once (the pipeline's changelog and ordering are tested in test_pipeline.py)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.store = DictStore()
        self.clock = clock or Clock()
        self.joiner = VisitJoiner(SETTINGS, Metrics(), self.store, self.clock)
        self.chain = Chain()

    def handle(self, rec: Record) -> list[Output]:
        txn = self.chain.begin()
        out = guarded(self.joiner, rec, txn)
        commit_now(txn)
        return out

    def expire(self, partitions: set[int]) -> list[Output]:
        txn = self.chain.begin()
        out = self.joiner.tick(txn, partitions)
        commit_now(txn)
        return out

    def keys(self) -> int:
        return sum(len(d) for d in self.store.data.values())


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
        join = Join()
        emitted = []
        for i, out in enumerate([*order, *order]):  # then both re-delivered
            emitted += [
                o for o in join.handle(part_record(out, i)) if o.topic == SETTINGS.topic_visits
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
    join = Join()
    assert join.handle(part_record(charges, 0)) == [] and join.keys() == 1  # waits, stored
    join.clock.now += timedelta(seconds=599)
    assert join.expire({2}) == []  # not yet
    join.clock.now += timedelta(seconds=2)
    [visit_out] = join.expire({2})
    partial = orjson.loads(visit_out.value or b"")
    assert partial["parts_missing"] == ["documentation"]
    assert join.expire({2}) == []  # emitted once
    later = [o for o in join.handle(part_record(docs, 1)) if o.topic == SETTINGS.topic_visits]
    complete = orjson.loads(later[0].value or b"")
    assert "parts_missing" not in complete and complete["event_id"] != partial["event_id"]
    assert complete["visit_id"] == partial["visit_id"]


def test_visits_untouched_beyond_the_retention_are_dropped() -> None:
    [charges], [docs] = parsed(DFT), parsed(MDM)
    join = Join()
    join.handle(part_record(charges, 0))
    join.handle(part_record(docs, 1))
    assert join.keys() == 1
    join.clock.now += timedelta(days=SETTINGS.join_retention_days, seconds=1)
    assert join.expire({2}) == [] and join.keys() == 0


def test_a_part_whose_key_is_not_its_patient_ref_is_dead_lettered() -> None:
    [charges] = parsed(DFT)
    rec = Record(SETTINGS.topic_ehr_parts, 0, 3, b"P-someone-else", charges.value, None)
    [letter] = Join().handle(rec)
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
    join = Join()
    emitted = [
        o
        for i, out in enumerate(outs)
        for o in join.handle(part_record(out, i))
        if o.topic == SETTINGS.topic_visits
    ]
    assert len(emitted) == 1
    visit = orjson.loads(emitted[0].value or b"")
    assert [d["kind"] for d in visit["documents"]] == ["progress_report"]
    assert visit["services"][0]["minutes"] == 33  # the procedures' minutes are in too


def test_ehr_dead_letters_are_fitted_to_the_topics_real_limit() -> None:
    """The worker reads ehr.deadletter.v1's max.message.bytes at start (streams/app.py); a
    letter that would not fit leaves the original bytes out and says so."""
    big = b"NOT-HL7 " * 5_000  # 40 KB of junk: rejected as not_hl7
    letters = EhrDeadLetters(SETTINGS, Metrics(), Clock())
    parser = EhrParser(SETTINGS, load_config(KEY), Metrics(), letters=letters)
    rec = Record(SETTINGS.topic_hl7_inbound, 0, 5, b"k", big, None)
    [whole] = parser.handle(rec)
    assert EhrDeadLetter.model_validate_json(whole.value or b"").value_b64 is not None
    letters.deadletter_limit = 16_384  # what a topic created at a small limit says
    [fitted] = parser.handle(rec)
    dead = EhrDeadLetter.model_validate_json(fitted.value or b"")
    assert len(fitted.value or b"") + len(fitted.key or b"") <= 16_384 - 1024
    assert dead.value_b64 is None and "40000 bytes not attached" in dead.detail
    assert dead.source.offset == 5 and dead.reason == "not_hl7"
    assert fitted.shrink is not None  # and smaller still if the broker refuses it


def test_a_stored_join_record_that_cannot_be_read_is_dead_lettered_and_dropped() -> None:
    """After an upgrade, say: the expiry dead-letters it with its bytes and drops it, the part
    that finds it is dead-lettered (replayable) and the partition moves on."""
    [charges], [docs] = parsed(DFT), parsed(MDM)
    join = Join()
    join.handle(part_record(charges, 0))
    [(key, _)] = list(join.store.items(2))
    join.store.write(2, {key: b"{not a join record"}, Tag(1, 1), None)
    [letter] = join.handle(part_record(docs, 1))
    assert EhrDeadLetter.model_validate_json(letter.value or b"").reason == "processing_error"
    [dropped] = join.expire({2})
    dead = EhrDeadLetter.model_validate_json(dropped.value or b"")
    assert dead.reason == "processing_error" and dead.source.partition == 2
    assert base64.b64decode(dead.value_b64 or "") == b"{not a join record"
    assert join.keys() == 0
    later = [
        o for o in join.handle(part_record(docs, 2)) if o.topic == SETTINGS.topic_ehr_deadletter
    ]
    assert later == []  # the replayed part now joins from scratch


def test_a_control_id_reused_with_other_content_is_dead_lettered_and_changes_nothing() -> None:
    """Issue 20 item 6 (HL7 v2.5.1 ch. 2.14.9.10: MSH-10 identifies one message): the second
    MDM with the first's MSH-10 and MSH-7 but another signing time (TXA-22 PPN.15; positions
    checked with hl7apy in tests/unit/ehr/test_ehr_control_id_conflict.py) is a conflict: a dead
    letter naming the control id and both messages' SHA-256, counted, the join record untouched; its
    re-delivery (after a crash) gives the same letter again, and the first's re-send nothing."""
    from prometheus_client import generate_latest

    resigned = MDM.replace(b"^^20260302165500", b"^^20260302170500")
    [charges], [docs], [other] = parsed(DFT), parsed(MDM), parsed(resigned)
    join = Join()
    join.handle(part_record(charges, 0))
    [visit] = join.handle(part_record(docs, 1))
    assert visit.topic == SETTINGS.topic_visits
    before = dict(join.store.items(2))
    for offset in (2, 3):  # delivered, then re-delivered
        [letter] = join.handle(part_record(other, offset))
        assert letter.topic == SETTINGS.topic_ehr_deadletter
        dead = EhrDeadLetter.model_validate_json(letter.value or b"")
        assert dead.reason == "control_id_conflict"
        assert (dead.source.control_id, dead.source.offset) == ("MDM-1001-1", offset)
        assert base64.b64decode(dead.value_b64 or "") == other.value
        # The messages as sent (CR-terminated segments, the last terminator not hashed).
        assert MDM.endswith(b"|F\r") and resigned.endswith(b"|F\r")
        first = hashlib.sha256(MDM[:-1]).hexdigest()
        second = hashlib.sha256(resigned[:-1]).hexdigest()
        assert first[:16] in dead.detail and second[:16] in dead.detail
        assert dict(join.store.items(2)) == before  # the first stands
    assert join.handle(part_record(docs, 4)) == []  # the first again: a duplicate
    text = generate_latest(join.joiner.metrics.registry).decode()
    assert 'therapy_compliance_ehr_rejected_total{reason="control_id_conflict"} 2.0' in text
