"""The demo HL7 sender (`therapy-compliance demo-hl7 --count N --seed S`): sends the synthetic
visits of synthetic/hl7.py to the MLLP gateway as an interface engine would (one message,
then wait for its ACK), and prints what came back."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections import Counter
from typing import TextIO

from ehr import mllp_frame
from runtime.settings import GatewaySettings
from synthetic.hl7 import FLAW_RULES, Hl7Message, Hl7VisitGenerator

PROG = "therapy-compliance demo-hl7"


def demo_hl7_main(settings: GatewaySettings, count: int, seed: int, join_wait_s: float) -> int:
    try:
        return asyncio.run(send_demo(settings, count, seed, join_wait_s))
    except KeyboardInterrupt:
        return 130


def client_tls(settings: GatewaySettings) -> ssl.SSLContext | None:
    """TLS when the gateway has it (TC_MLLP_CERTFILE): for the demo, trust that certificate
    itself (a self-signed one included), checking the host name TC_MLLP_HOST."""
    if settings.mllp_certfile is None:
        return None
    ctx = ssl.create_default_context(cafile=str(settings.mllp_certfile))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


async def send_demo(
    settings: GatewaySettings,
    count: int,
    seed: int,
    join_wait_s: float,
    out: TextIO = sys.stdout,
) -> int:
    host, port = settings.mllp_host, settings.mllp_port
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=client_tls(settings))
    except (OSError, ssl.SSLError) as exc:
        out.write(
            f"{PROG}: cannot reach the MLLP gateway at {host}:{port} ({exc}); is "
            "`therapy-compliance mllp-gateway` running? (TC_MLLP_HOST, TC_MLLP_PORT)\n"
        )
        return 1
    acks: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    types: Counter[str] = Counter()
    intents: Counter[str] = Counter()
    started, last = time.monotonic(), time.monotonic()
    # An ACK normally comes in milliseconds; AR takes up to TC_MLLP_ACK_TIMEOUT_S.
    wait_s = settings.mllp_ack_timeout_s + 15
    sent = 0
    stored: list[list[Hl7Message]] = []  # per visit, the messages answered AA, in order
    sent_visits: list[list[Hl7Message]] = []  # per visit, the messages sent
    try:
        for visit in Hl7VisitGenerator(seed=seed).visits(count):
            intents[next(m.intent for m in visit if not m.intent.endswith(":first"))] += 1
            stored.append([])
            sent_visits.append(visit)
            for m in visit:
                writer.write(mllp_frame(m.raw))
                await writer.drain()
                block = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), wait_s)
                sent += 1
                types["DFT^P03" if m.kind == "charges" else "MDM^T02"] += 1
                code, control_id, text = _msa(block)
                acks[code] += 1
                if code == "AA":
                    stored[-1].append(m)
                if control_id != m.control_id:
                    acks["MSA-2 mismatch"] += 1
                if code != "AA":
                    errors[f"{code} {text.split(':')[0]}"] += 1
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                out.write(f"{PROG}: {sent} messages answered ({dict(acks)})\n")
                out.flush()
    except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
        out.write(
            f"{PROG}: connection to the gateway failed after {sent} messages "
            f"({type(exc).__name__})\n"
        )
        return 1
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    out.write(
        f"{PROG}: {count} visits, {sent} messages sent to {host}:{port} in {elapsed:.1f}s "
        f"({dict(sorted(types.items()))})\n"
        f"  ACKs: AA {acks['AA']}, AE {acks['AE']}, AR {acks['AR']}"
        + (f", MSA-2 mismatches {acks['MSA-2 mismatch']}" if acks["MSA-2 mismatch"] else "")
        + "\n"
    )
    if errors:
        out.write(f"  not accepted: {dict(sorted(errors.items()))}\n")
        if any(k.startswith("AE unmapped_code") for k in errors):
            out.write(
                "  (AE unmapped_code: the demo's commercial payers SYNPPO / SYNHMO are not "
                "in the profile's [payers]: `therapy-compliance demo-hl7 --print-profile` "
                "prints a profile that maps them, for TC_EHR_PROFILE)\n"
            )
        if acks["AR"]:
            out.write("  (AR: not stored; a real sender resends these)\n")
    out.write(f"  visits by intent: {dict(sorted(intents.items()))}\n")
    intended, whole = intended_alerts(sent_visits, stored)
    out.write(
        f"  intended alerts by rule: {' '.join(f'{r}={n}' for r, n in intended) or 'none'}"
        f" (the {whole} of {len(stored)} visits whose every message was stored)\n"
    )
    complete, partial = join_expectation(stored)
    out.write(
        f"  the worker's join should emit {complete} complete and {partial} partial visit "
        f"events (partial: after TC_JOIN_WAIT_S = {join_wait_s:g} s)\n"
    )
    return 1 if acks["AR"] or acks["MSA-2 mismatch"] else 0


def intended_alerts(
    sent: list[list[Hl7Message]], stored: list[list[Hl7Message]]
) -> tuple[list[tuple[str, int]], int]:
    """The alerts the worker should raise, by rule (one per visit and rule: FLAW_RULES), for
    the visits whose every message was stored (`sent` and `stored` per visit, in order; a visit
    with a message answered AE or AR is joined without it, which its intent does not describe);
    and how many visits those are."""
    counts: Counter[str] = Counter()
    whole = 0
    for messages, kept in zip(sent, stored, strict=True):
        if len(kept) != len(messages):
            continue
        whole += 1
        intent = next(m.intent for m in messages if not m.intent.endswith(":first"))
        counts.update(FLAW_RULES.get(intent, ()))
    return sorted(counts.items()), whole


def join_expectation(stored: list[list[Hl7Message]]) -> tuple[int, int]:
    """(complete, partial): the visit events the worker's join emits for each visit's stored
    messages, in the order sent. A visit is emitted once both halves are in, and again for every
    later DFT or note (a newer version of a part changes the event id); a visit with one half
    only is emitted once, marked partial, after TC_JOIN_WAIT_S (ehr/join.py, streams/ehr_stages.py)."""
    complete = partial = 0
    for messages in stored:
        have: set[str] = set()
        for m in messages:
            have.add(m.kind)
            complete += len(have) == 2
        partial += len(have) == 1
    return complete, partial


def _msa(block: bytes) -> tuple[str, str, str]:
    """MSA-1, MSA-2, MSA-3 of an MLLP-framed ACK."""
    text = block.strip(b"\x0b\x1c\r").decode("ascii", errors="replace")
    for segment in text.split("\r"):
        fields = segment.split("|")
        if fields[0] == "MSA":
            fields += ["", "", ""]
            return fields[1], fields[2], fields[3]
    return "no MSA", "", ""
