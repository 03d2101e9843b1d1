"""KX_MODIFIER_MISSING / KX_MODIFIER_PREMATURE, each case next to its source: CMS Pub. 100-04,
Ch. 5, sec. 10.3 (per beneficiary and calendar year; PT and SLP combined, OT separate); CMS
Therapy Services page ("For CY 2026 this KX modifier threshold amount is: $2,480 for PT and SLP
services combined, and $2,480 for OT services"; "Claims for services over the KX modifier
threshold amounts without the KX modifier are denied"; CR 14252); 2025: $2,410 (secondary
sources only). Accruals in each test are summed by hand from the allowed amounts."""

from __future__ import annotations

from datetime import date
from typing import Any

from compliance import Engine
from tests.factories import doc, episode_visit, line
from tests.unit.compliance.episode_helpers import alert, day, flagged, run

D0 = date(2026, 3, 2)
MISSING = "KX_MODIFIER_MISSING"
PREMATURE = "KX_MODIFIER_PREMATURE"


def visit(
    visit_id: str, n: int, amount: str, discipline: str = "PT", start: date = D0, **kw: Any
) -> dict[str, Any]:
    # Documents keep the episode rules quiet: the KX rules are per patient, not per episode.
    docs = [doc("plan_of_care"), doc("certification", author="MD"), doc("progress_report")]
    return episode_visit(
        visit_id, day(start, n), discipline=discipline, amount=amount, docs=docs, **kw
    )


def test_pt_over_the_2026_threshold_without_kx(engine: Engine) -> None:
    # 2,400.00 accrued, then 100.00: 2,500.00 > 2,480.00 (CY 2026).
    visits = [visit("V-1", 0, "1200.00"), visit("V-2", 2, "1200.00"), visit("V-3", 4, "100.00")]
    out = run(engine, visits)
    assert flagged(out, MISSING) == ["V-3"]
    body = alert(out[2], MISSING)
    assert body["expected"] == {
        "threshold": "2480.00",
        "bucket": "PT_SLP",
        "year": 2026,
        "modifier": "KX",
    }
    assert body["observed"]["accrued"] == "2500.00"
    assert body["observed"]["accrued_before_visit"] == "2400.00"
    assert body["amount_at_risk"] == "100.00" and body["line_ids"] == ["1"]
    assert "CR 14252" in body["reference"]


def test_with_kx_over_the_threshold_is_clean(engine: Engine) -> None:
    visits = [visit("V-1", 0, "2400.00"), visit("V-2", 2, "100.00", kx=True)]
    assert [o.alerts for o in run(engine, visits)] == [[], []]


def test_exactly_at_the_threshold_is_not_over(engine: Engine) -> None:
    # "exceeds" (EVENTS.md): 2,480.00 is not over 2,480.00; one cent more is.
    at = [visit("V-1", 0, "2380.00"), visit("V-2", 2, "100.00")]
    assert flagged(run(engine, at), MISSING) == []
    over = [visit("V-1", 0, "2380.01"), visit("V-2", 2, "100.00")]
    assert flagged(run(engine, over), MISSING) == ["V-2"]


def test_slp_accrues_with_pt(engine: Engine) -> None:
    # PT and SLP share one threshold: an SLP visit crosses it after PT spending.
    visits = [visit("V-1", 0, "2400.00"), visit("V-2", 2, "100.00", discipline="SLP")]
    out = run(engine, visits)
    assert flagged(out, MISSING) == ["V-2"]
    assert alert(out[1], MISSING)["discipline"] == "SLP"


def test_ot_accrues_alone(engine: Engine) -> None:
    # OT is its own bucket: 3,000.00 of PT does not make an OT visit need KX ...
    visits = [visit("V-1", 0, "3000.00", kx=True), visit("V-2", 2, "100.00", discipline="OT")]
    out = run(engine, visits)
    assert flagged(out, MISSING) == []
    # ... and KX on it is premature (100.00 of OT < 90% of 2,480.00).
    visits[1] = visit("V-2", 2, "100.00", discipline="OT", kx=True)
    out = run(engine, visits)
    assert flagged(out, PREMATURE) == ["V-2"]
    # OT over its own threshold needs KX.
    ot = [visit("V-1", 0, "2480.00", discipline="OT"), visit("V-2", 2, "0.01", discipline="OT")]
    assert flagged(run(engine, ot), MISSING) == ["V-2"]


def test_year_boundary_starts_a_new_accrual(engine: Engine) -> None:
    # Per calendar year: 2025's 3,000.00 (over its $2,410) does not carry into 2026.
    dec = date(2025, 12, 1)
    visits = [
        visit("V-1", 0, "3000.00", start=dec, kx=True),
        visit("V-2", 36, "100.00", start=dec),  # 2026-01-06
    ]
    out = run(engine, visits)
    assert [o.alerts for o in out] == [[], []]
    visits[1] = visit("V-2", 36, "100.00", start=dec, kx=True)
    assert flagged(run(engine, visits), PREMATURE) == ["V-2"]
    # 2025 has its own threshold: 2,400.00 + 100.00 > 2,410.00.
    y25 = [visit("V-1", 0, "2400.00", start=dec), visit("V-2", 2, "100.00", start=dec)]
    out = run(engine, y25)
    assert flagged(out, MISSING) == ["V-2"]
    assert alert(out[1], MISSING)["expected"]["threshold"] == "2410.00"


def test_premature_below_90_percent_only(engine: Engine) -> None:
    # 90% of 2,480.00 = 2,232.00.
    below = [visit("V-1", 0, "2100.00"), visit("V-2", 2, "100.00", kx=True)]  # 2,200.00
    out = run(engine, below)
    assert flagged(out, PREMATURE) == ["V-2"]
    body = alert(out[1], PREMATURE)
    assert body["severity"] == "warning" and body["amount_at_risk"] is None
    assert body["observed"]["accrued"] == "2200.00"
    assert body["expected"]["kx_from_share_percent"] == 90
    at_share = [visit("V-1", 0, "2132.00"), visit("V-2", 2, "100.00", kx=True)]  # 2,232.00
    assert flagged(run(engine, at_share), PREMATURE) == []


def test_kx_is_medicare_part_b_only(engine: Engine) -> None:
    # payer_policies.toml kx_threshold: Original Medicare (Part B) only.
    for kind in ("medicare_advantage", "commercial"):
        visits = [visit("V-1", 0, "2400.00", kind=kind), visit("V-2", 2, "100.00", kind=kind)]
        assert flagged(run(engine, visits), MISSING) == [], kind
    # A commercial visit does not accrue toward the Medicare threshold.
    mixed = [visit("V-1", 0, "2400.00", kind="commercial"), visit("V-2", 2, "100.00")]
    assert flagged(run(engine, mixed), MISSING) == []


def test_no_threshold_data_for_the_year_no_check(engine: Engine) -> None:
    jan27 = date(2027, 1, 4)
    visits = [visit("V-1", 0, "3000.00", start=jan27), visit("V-2", 2, "100.00", start=jan27)]
    out = run(engine, visits)
    assert flagged(out, MISSING) == []


def test_unknown_amounts_are_counted_and_named_when_they_matter(engine: Engine) -> None:
    # No allowed_amount and no fee schedule row: the amount is unknown, never guessed. It
    # cannot make the accrual exceed the threshold; it could lift it over 90%, so a premature
    # KX warning names it.
    v1 = visit("V-1", 0, "1000.00")
    v2 = visit("V-2", 2, "x", kx=True)
    v2["services"] = [
        line("1", "97110", 1, 15, ["GP", "KX"]),
        line("2", "97140", 1, 15, ["GP", "KX"]),
    ]
    v2["total_timed_minutes"] = 30
    v2["total_treatment_minutes"] = 40
    out = run(engine, [v1, v2])
    assert out[0].kx_unknown_amount_lines == 0 and out[1].kx_unknown_amount_lines == 2
    body = alert(out[1], PREMATURE)
    assert body["observed"]["unknown_amount_lines"] == 2
    assert body["observed"]["unknown_amount"] == [{"visit_id": "V-2", "line_ids": ["1", "2"]}]
    # Over the threshold with known amounts, an unknown line does not matter: not named.
    v0 = visit("V-0", 0, "2400.00")
    v3 = visit("V-3", 2, "100.00")  # 2,500.00 with its known line ...
    v3["services"].append(line("2", "97140", 1, 15, ["GP"]))  # ... and one of unknown amount
    v3["total_timed_minutes"] = 30
    v3["total_treatment_minutes"] = 40
    out = run(engine, [v0, v3])
    assert flagged(out, MISSING) == ["V-3"]
    body = alert(out[1], MISSING)
    assert "unknown_amount" not in body["observed"] and body["line_ids"] == ["1", "2"]
    assert body["amount_at_risk"] is None  # one denied line's amount is unknown


def test_late_visit_accrues_only_what_was_dated_up_to_it(engine: Engine) -> None:
    # EVENTS.md: a late visit is judged at its own date. V-LATE (day 1) arrives after V-2 (day
    # 10): only V-1 (day 0) precedes it in the accrual.
    visits = [
        visit("V-1", 0, "2400.00"),
        visit("V-2", 10, "500.00", kx=True),
        visit("V-LATE", 1, "50.00"),
    ]
    out = run(engine, visits)
    assert flagged(out, MISSING) == []  # 2,450.00 at day 1
    visits[2] = visit("V-LATE", 1, "90.00")  # 2,490.00 at day 1
    assert flagged(run(engine, visits), MISSING) == ["V-LATE"]
