"""The demo sender's messages (synthetic/hl7.py): every one is STRICT-valid HL7 v2.5.1
(hl7apy), parses with the profile into the part it was meant to be, carries a valid NPI, and the
flaws are what they claim to be. Expected values are computed here independently (Luhn, the
15-minute unit chart)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from cli.demo_hl7 import join_expectation
from cli.main import main
from ehr import (
    ChargePart,
    DocumentationPart,
    EhrConfig,
    Rejection,
    VisitState,
    add_part,
    assemble,
    load_config,
    load_profile,
    parse_hl7v2,
)
from synthetic.hl7 import Hl7Message, Hl7VisitGenerator, demo_profile

ROOT = Path(__file__).resolve().parents[3]
KEY = b"test-key-0123456789abcdef"
SHIPPED = load_config(KEY)
DEMO = SHIPPED.model_copy(update={"profile": demo_profile(SHIPPED.profile)})


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812 Luhn: double every second digit from the right, the sum ends in 0."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


#: CPT codes whose descriptor reads "each 15 minutes" among those the generator bills.
TIMED_CODES = {"97110", "97112", "97116", "97140", "97530", "97535"}


def units_chart(minutes: int) -> int:
    """CMS Pub. 100-04 Ch. 5 sec. 20.2 chart: 8-22 min = 1 unit, 23-37 = 2, 38-52 = 3, ..."""
    return 0 if minutes < 8 else (minutes - 8) // 15 + 1


def sample(seed: int, visits: int) -> list[list[Hl7Message]]:
    return list(Hl7VisitGenerator(seed=seed).visits(visits))


@pytest.mark.parametrize("seed", [1, 2])
def test_every_message_is_strict_hl7_251(seed: int) -> None:
    for visit in sample(seed, 30):
        for m in visit:
            text = m.raw.decode("utf-8")
            msg = parse_message(text, find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
            msg.validate()


def test_messages_parse_into_the_intended_parts() -> None:
    kinds: Counter[str] = Counter()
    for visit in sample(5, 120):
        for m in visit:
            part = parse_hl7v2(m.raw, DEMO)
            assert not isinstance(part, Rejection), (m.control_id, part)
            assert part.visit.text == m.visit and part.message_id == m.control_id
            kinds[m.kind] += 1
            if m.kind == "charges":
                assert isinstance(part, ChargePart)
                got = [(ln.cpt, ln.units, tuple(ln.modifiers), ln.minutes) for ln in part.lines]
                want = [(ln.cpt, ln.units, ln.modifiers, ln.pr1_minutes) for ln in m.lines]
                assert got == want
                assert part.payer.kind == m.payer_kind
                assert luhn_valid("80840" + part.rendering_npi)
            else:
                assert isinstance(part, DocumentationPart)
                assert part.minutes_by_cpt == m.minutes_by_cpt
                assert part.total_timed_minutes == m.total_timed_minutes
                assert part.total_treatment_minutes == m.total_treatment_minutes
                (doc,) = part.documents
                assert doc.signed_at is not None  # TXA-17 LA/AU with a TXA-22 signer and time
    assert kinds["charges"] > 100 and kinds["documentation"] > 80


def test_the_shipped_profile_rejects_only_unmapped_commercial_payers() -> None:
    outcomes: Counter[tuple[str, str]] = Counter()
    for visit in sample(6, 60):
        for m in visit:
            part = parse_hl7v2(m.raw, SHIPPED)
            ok = "part" if not isinstance(part, Rejection) else part.reason.value
            outcomes[(m.payer_kind if m.kind == "charges" else "doc", ok)] += 1
    assert set(outcomes) <= {
        ("medicare", "part"),
        ("commercial", "unmapped_code"),
        ("doc", "part"),
    }


def test_flaws_are_what_they_claim() -> None:
    seen: Counter[str] = Counter()
    for visit in sample(11, 250):
        intents = {m.intent for m in visit}
        flaw = next(i for i in intents if not i.endswith(":first"))
        seen[flaw] += 1
        dfts = [m for m in visit if m.kind == "charges"]
        docs = [m for m in visit if m.kind == "documentation"]
        if flaw == "no_documentation":
            assert docs == [] and len(dfts) == 1
            continue
        (doc,) = docs
        billed = dfts[-1]
        timed = [ln for ln in billed.lines if ln.cpt in TIMED_CODES]
        if flaw == "units_over" and billed.payer_kind == "medicare":
            # More timed units than the pooled minutes support (CMS 8-minute rule).
            assert sum(ln.units for ln in timed) > units_chart(doc.total_timed_minutes or 0)
        elif flaw == "units_over":
            # AMA/CPT midpoint rule, per code: one code billed beyond its own minutes.
            assert any(ln.units > units_chart(doc.minutes_by_cpt[ln.cpt]) for ln in timed)
        elif flaw == "minutes_missing":
            # Neither the note nor the DFT's PR1-7 (the join's fallback) states its minutes.
            assert any(ln.cpt not in doc.minutes_by_cpt and ln.pr1_minutes is None for ln in timed)
        elif flaw in ("resent_correction", "resent_correction_untimed"):
            first, second = dfts
            assert first.intent == f"{flaw}:first" and first.control_id != second.control_id
            assert sum(ln.units for ln in first.lines) == sum(ln.units for ln in second.lines) + 1
            # The extra unit is on a timed code, or (SLP: untimed codes only) the untimed one.
            extra = [a for a, b in zip(first.lines, second.lines, strict=True) if a != b]
            assert [ln.cpt in TIMED_CODES for ln in extra] == [flaw == "resent_correction"]
            v1, v2 = parse_hl7v2(first.raw, DEMO), parse_hl7v2(second.raw, DEMO)
            assert isinstance(v1, ChargePart) and isinstance(v2, ChargePart)
            assert v2.version.at > v1.version.at  # the correction is the newer version
    assert set(seen) == {
        "clean",
        "units_over",
        "minutes_missing",
        "no_documentation",
        "resent_correction",
        "resent_correction_untimed",
    }
    assert 0.6 < seen["clean"] / sum(seen.values()) < 0.8


def test_deterministic_per_seed_and_obviously_synthetic() -> None:
    a = [m.raw for v in sample(9, 20) for m in v]
    assert a == [m.raw for v in sample(9, 20) for m in v]
    assert a != [m.raw for v in sample(10, 20) for m in v]
    for raw in a:
        pid = next(s for s in raw.decode().split("\r") if s.startswith("PID|"))
        fields = pid.split("|")
        assert fields[3].startswith("SYN") and fields[5].split("^")[0] in (
            "SYNTHETIC",
            "SYNTHÉTIQUE",
        )
    assert any("UNICODE UTF-8" in m.raw.decode() for v in sample(9, 60) for m in v)


def test_the_docs_payer_snippet_gets_the_demo_accepted(tmp_path: Path) -> None:
    """docs/integration-hl7.md tells how to make the demo's commercial DFTs AA: it works."""
    doc = (ROOT / "docs/integration-hl7.md").read_text()
    (snippet,) = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    text = (ROOT / "ehr/profile.toml").read_text().replace("[payers]\n", "[payers]\n" + snippet, 1)
    (tmp_path / "demo.toml").write_text(text)
    config = load_config(KEY, tmp_path / "demo.toml")
    commercial = [
        m for v in sample(8, 40) for m in v if m.kind == "charges" and m.payer_kind == "commercial"
    ]
    assert commercial
    for m in commercial:
        part = parse_hl7v2(m.raw, config)
        assert isinstance(part, ChargePart) and part.payer.kind == "commercial"


def test_the_printed_demo_profile_is_the_shipped_one_plus_the_demo_payers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`demo-hl7 --print-profile` (what ops/demo --hl7 gives the gateway and the worker) is the
    shipped file with only [payers] extended, and it accepts every demo message."""
    assert main(["demo-hl7", "--print-profile"]) == 0
    (tmp_path / "demo.toml").write_text(capsys.readouterr().out)
    printed = load_profile(tmp_path / "demo.toml")
    shipped = load_profile()
    assert printed == demo_profile(shipped)
    assert printed.model_copy(update={"payers": shipped.payers}) == shipped
    assert set(printed.payers) - set(shipped.payers) == {"SYNPPO", "SYNHMO"}
    config = load_config(KEY, tmp_path / "demo.toml")
    for visit in sample(3, 40):
        for m in visit:
            assert not isinstance(parse_hl7v2(m.raw, config), Rejection), m.control_id


def join_oracle(messages: list[Hl7Message], config: EhrConfig) -> tuple[int, int]:
    """What the real join (ehr/join.py) emits for one visit's stored messages, in order: complete
    events (a new event id each time), then one partial if it never completed."""
    state: VisitState | None = None
    last, complete = None, 0
    for m in messages:
        part = parse_hl7v2(m.raw, config)
        assert not isinstance(part, Rejection)
        state = add_part(state, part)
        made = assemble(state)
        if isinstance(made, dict) and made["event_id"] != last:
            complete, last = complete + 1, made["event_id"]
    if last is not None or state is None:
        return complete, 0
    return complete, int(isinstance(assemble(state, partial_ok=True), dict))


@pytest.mark.parametrize("config_name", ["demo", "shipped"])
def test_the_senders_join_expectation_is_what_the_join_does(config_name: str) -> None:
    """demo-hl7 prints how many visit events the worker should emit; ops/demo --hl7 waits for
    them. Checked against the join itself, with the demo profile (everything stored) and the
    shipped one (commercial DFTs answered AE, so their notes wait alone)."""
    config = DEMO if config_name == "demo" else SHIPPED
    stored = [
        [m for m in visit if not isinstance(parse_hl7v2(m.raw, config), Rejection)]
        for visit in sample(12, 150)
    ]
    oracle = [join_oracle(v, config) for v in stored]
    assert join_expectation(stored) == (sum(c for c, _ in oracle), sum(p for _, p in oracle))
    complete, partial = join_expectation(stored)
    assert complete > len(stored) / 2 and partial > 0
