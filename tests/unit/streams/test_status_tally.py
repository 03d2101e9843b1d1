"""The per-partition tally behind the on-hold gauges (compliance/status.py `Tally`): counted
by hand from the statuses' open alerts, kept per partition in every store, summed over the
owned partitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from compliance import state_layout
from compliance.records import OpenAlert, StatusState
from compliance.status import StatusEvent, Subject, Tally, build_status, tally_bytes, tally_of
from schemas.visit_status import StatusCause
from streams.metrics import Metrics
from streams.transaction import Tag
from tests.unit.streams.test_tables import table_store

NOW = datetime(2026, 3, 2, tzinfo=UTC)
SUBJECT = Subject("V-1", "P-1", NOW.date(), "MEDICARE-B", "PT", "e1")
CERT = OpenAlert("a1", "CERTIFICATION_MISSING", "error", ("1",), "96.40", "episode")
KX = OpenAlert("a2", "KX_MODIFIER_PREMATURE", "warning", ("1",), None, "kx")
UNITS = OpenAlert("a3", "TIMED_UNITS_EXCEED_MINUTES", "error", ("1",), "31.12", "own")


def status(previous: tuple[OpenAlert, ...] | None, now: tuple[OpenAlert, ...]) -> StatusEvent:
    before = StatusState(1, previous) if previous is not None else None
    after = StatusState(2 if previous is not None else 1, now)
    return build_status(SUBJECT, before, after, StatusCause.VISIT, ("e1", "V-1"), NOW, "e", "r")


def test_a_hold_released_is_counted_out() -> None:
    t = Tally()
    t.add(status(None, (CERT, KX)))  # hold: an error open; 96.40 at risk
    assert (t.hold, t.hold_cents) == (1, 9640)
    assert t.alerts == {"CERTIFICATION_MISSING error": 1, "KX_MODIFIER_PREMATURE warning": 1}
    assert t.cents == {"CERTIFICATION_MISSING": 9640}
    t.add(status((CERT, KX), (KX,)))  # released to review
    assert (t.hold, t.hold_cents) == (0, 0)
    assert t.alerts == {"KX_MODIFIER_PREMATURE warning": 1} and t.cents == {}
    t.add(status((KX,), (KX, UNITS)))  # on hold again, 31.12
    assert (t.hold, t.hold_cents) == (1, 3112) and t.cents == {"TIMED_UNITS_EXCEED_MINUTES": 3112}
    assert tally_of(tally_bytes(t)) == t


def test_each_partition_keeps_its_own_tally_in_every_store(tmp_path: Path) -> None:
    # The memory store keeps all partitions' keys in one namespace: the partition is in the key.
    for kind in ("memory", "rocksdb"):
        ts = table_store(tmp_path / kind, kind)
        if kind == "rocksdb":
            for p in (0, 1):
                ts.table.data._db_for_partition(p)  # type: ignore[attr-defined]  # faust's assign
        for p, held in ((0, 3), (1, 5)):
            key = state_layout.tally_key(p)
            ts.write(p, {key: tally_bytes(Tally(hold=held))}, Tag(1, 1), 0)
        assert [tally_of(ts.get(p, state_layout.tally_key(p))).hold for p in (0, 1)] == [3, 5]


def test_the_gauges_sum_the_partitions() -> None:
    m = Metrics(CollectorRegistry())
    m.show_tallies(
        [
            Tally(1, 9640, {"CERTIFICATION_MISSING error": 1}, {"CERTIFICATION_MISSING": 9640}),
            Tally(2, 100, {"CERTIFICATION_MISSING error": 2}, {"CERTIFICATION_MISSING": 100}),
        ]
    )
    r = m.registry
    assert r.get_sample_value("therapy_compliance_visits_on_hold") == 3
    assert r.get_sample_value("therapy_compliance_hold_amount_at_risk_usd") == 97.40
    labels = {"rule_id": "CERTIFICATION_MISSING", "severity": "error"}
    assert r.get_sample_value("therapy_compliance_open_alerts", labels) == 3
    assert (
        r.get_sample_value(
            "therapy_compliance_open_amount_at_risk_usd", {"rule_id": "CERTIFICATION_MISSING"}
        )
        == 97.40
    )
