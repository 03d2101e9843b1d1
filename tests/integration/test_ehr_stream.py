"""The EHR path in the worker on the real broker: raw HL7 v2 on `ehr.hl7v2.inbound.v1` -> parts
(re-keyed by patient_ref) -> the join table -> `TherapyVisitCompleted` on the visit topic -> the
checks. Both halves in any order, duplicates, a re-sent DFT, one half only (the wait expires),
a SIGKILL between the halves, and no PID content anywhere downstream."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import (
    EXE,
    Topics,
    Worker,
    by_topic,
    consume,
    create_topics,
    produce,
)

pytestmark = pytest.mark.timeout(240)
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ehr"
KEY = "integration-test-key-0123456789"
DFT = (FIX / "dft_p03_pt_v1001.hl7").read_bytes()
DFT_RESENT = (FIX / "dft_p03_pt_v1001_resent.hl7").read_bytes()  # 97140 x2 instead of x1
MDM = (FIX / "mdm_t02_pt_daily_v1001.hl7").read_bytes()
# Marker values in the PID fields that must never leave the inbound topic.
MARKED_PID = (
    b"PID|1|ZZPID2X|ZZMRN77^^^CLINIC01^MR|ZZALT44|ZZFAMILY^ZZGIVEN||19230405|F|||"
    b"1 ZZSTREET^^ZZCITY^ST^00000||(555)987-6543|||||ZZACCT88|987-65-4320"
)
MARKERS = [
    "ZZPID2X",
    "ZZMRN77",
    "ZZALT44",
    "ZZFAMILY",
    "ZZGIVEN",
    "19230405",
    "ZZSTREET",
    "ZZCITY",
    "987-6543",
    "ZZACCT88",
    "987-65-4320",
]


def marked(message: bytes) -> bytes:
    return b"\r".join(MARKED_PID if s.startswith(b"PID|") else s for s in message.split(b"\r"))


def ehr_topics(tag: str) -> tuple[Topics, dict[str, str]]:
    t = Topics.unique(tag)
    env = {
        "TC_EHR_PATIENT_KEY": KEY,
        "TC_TOPIC_HL7_INBOUND": f"{t.visits}.hl7",
        "TC_TOPIC_FHIR_INBOUND": f"{t.visits}.fhir",
        "TC_TOPIC_EHR_PARTS": f"{t.visits}.parts",
        "TC_TOPIC_EHR_DEADLETTER": f"{t.visits}.ehrdl",
    }
    return t, env


def offline_visit(*messages: bytes, tmp: Path) -> dict[str, Any]:
    """The visit `therapy-compliance convert` assembles from the same messages (the oracle for
    what the stream must emit: same join code offline, no Kafka)."""
    path = tmp / "messages.hl7"
    path.write_bytes(b"\n".join(messages))
    proc = subprocess.run(
        [EXE, "convert", "--from", "hl7", str(path)],
        capture_output=True,
        timeout=60,
        env={"TC_EHR_PATIENT_KEY": KEY, "PATH": "/usr/bin:/bin"},
    )
    visits = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert visits, proc.stderr
    return visits[-1]


async def visits_on(t: Topics, n: int, timeout: float = 60, idle: float = 2) -> list[Any]:
    recs = await consume([t.visits], until=n, timeout=timeout, idle_after=idle)
    return [orjson.loads(r.value) for r in recs]


@pytest.mark.asyncio
async def test_both_halves_in_any_order_with_duplicates_give_one_visit(
    make_worker: Any, tmp_path: Path
) -> None:
    t, env = ehr_topics("ehr-join")
    worker: Worker = make_worker(t, **env)
    worker.start()
    key = b"sender-chosen-key"  # the raw topic may be keyed by anything: parsing re-keys
    # Documentation first, then the charges, then both again (integration engines resend).
    await produce(env["TC_TOPIC_HL7_INBOUND"], [(key, MDM), (key, DFT), (key, MDM), (key, DFT)])
    visits = await visits_on(t, 1, idle=3)
    expected = offline_visit(DFT, MDM, tmp=tmp_path)
    assert [v["event_id"] for v in visits] == [expected["event_id"]]  # once, despite resends
    assert visits[0] == expected
    checked = await consume([t.checked], until=1)
    assert by_topic(checked, t.checked)[0]["event_id"] == expected["event_id"]


@pytest.mark.asyncio
async def test_a_resent_dft_replaces_the_charges(make_worker: Any, tmp_path: Path) -> None:
    t, env = ehr_topics("ehr-resend")
    worker: Worker = make_worker(t, **env)
    worker.start()
    await produce(env["TC_TOPIC_HL7_INBOUND"], [(b"k", DFT), (b"k", MDM), (b"k", DFT_RESENT)])
    visits = await visits_on(t, 2, idle=3)
    assert len(visits) == 2
    corrected = visits[-1]
    assert corrected == offline_visit(DFT, MDM, DFT_RESENT, tmp=tmp_path)
    units = {s["cpt"]: s["units"] for s in corrected["services"]}
    assert units == {"97110": 2, "97140": 2}  # replaced, not doubled (two lines, not four)
    assert corrected["visit_id"] == visits[0]["visit_id"]
    assert corrected["event_id"] != visits[0]["event_id"]  # a correction: a new event


@pytest.mark.asyncio
async def test_one_half_only_is_emitted_after_the_wait(make_worker: Any) -> None:
    t, env = ehr_topics("ehr-wait")
    worker: Worker = make_worker(t, TC_JOIN_WAIT_S="3", **env)
    worker.start()
    started = time.monotonic()
    await produce(env["TC_TOPIC_HL7_INBOUND"], [(b"k", DFT)])
    visits = await visits_on(t, 1, timeout=60, idle=3)
    waited = time.monotonic() - started
    assert len(visits) == 1 and visits[0]["parts_missing"] == ["documentation"]
    assert waited >= 3
    assert [s["cpt"] for s in visits[0]["services"]] == ["97110", "97140"]


@pytest.mark.asyncio
async def test_sigkill_between_the_halves_still_emits_the_visit_once(
    make_worker: Any, tmp_path: Path
) -> None:
    t, env = ehr_topics("ehr-kill")
    worker: Worker = make_worker(t, **env)
    worker.start()
    await produce(env["TC_TOPIC_HL7_INBOUND"], [(b"k", DFT)])
    deadline = time.monotonic() + 30
    while 'therapy_compliance_ehr_parts_total{part="charges"' not in worker.metrics():
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # the charges are in the join table (and its changelog)
    worker.stop(signal.SIGKILL)
    worker.start()
    await produce(env["TC_TOPIC_HL7_INBOUND"], [(b"k", MDM)])
    visits = await visits_on(t, 1, idle=4)
    assert [v["event_id"] for v in visits] == [offline_visit(DFT, MDM, tmp=tmp_path)["event_id"]]


@pytest.mark.asyncio
async def test_no_pid_content_reaches_visits_alerts_logs_or_metrics(make_worker: Any) -> None:
    t, env = ehr_topics("ehr-phi")
    await create_topics(t)
    worker: Worker = make_worker(t, TC_LOG_LEVEL="debug", **env)
    worker.start()
    resent = marked(DFT_RESENT).replace(b"|2|||", b"|9|||")  # 97110 x9: an alert for sure
    bad = marked(MDM).replace(b"PTDAILY", b"ZZNOPE")  # an unmapped document type: rejected
    await produce(
        env["TC_TOPIC_HL7_INBOUND"],
        [(b"k", marked(DFT)), (b"k", marked(MDM)), (b"k", resent), (b"k", bad)],
    )
    recs = await consume(
        [t.visits, t.alerts, t.checked, env["TC_TOPIC_EHR_PARTS"], env["TC_TOPIC_EHR_DEADLETTER"]],
        until=lambda rs: (
            len({r.offset for r in rs if r.topic == t.checked}) >= 2
            and any(r.topic == env["TC_TOPIC_EHR_DEADLETTER"] for r in rs)
        ),
        timeout=90,
        idle_after=2,
    )
    assert any(r.topic == t.alerts for r in recs)
    downstream = _without_b64(recs)
    letters = [orjson.loads(r.value) for r in recs if r.topic == env["TC_TOPIC_EHR_DEADLETTER"]]
    details = " ".join(d["detail"] for d in letters)
    log = worker.log_path.read_text(errors="replace")
    metrics = worker.metrics()
    for marker in MARKERS:
        # Dead letters keep the original bytes (value_b64, for replay) by design; everything
        # else, their details included, holds none of PID.
        assert marker not in downstream, marker
        assert marker not in details and marker not in log and marker not in metrics, marker
    worker.stop()


def _without_b64(recs: list[Any]) -> str:
    out = []
    for r in recs:
        if r.value is None:
            continue
        body = orjson.loads(r.value)
        if isinstance(body, dict):
            body.pop("value_b64", None)
        out.append(orjson.dumps(body).decode())
    return "\n".join(out)
