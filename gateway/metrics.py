"""Prometheus metrics of the MLLP gateway, in its own registry. Labels are bounded sets (message
types of the profile, ACK codes, reasons); never a control id, patient or visit."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ehr.rejection import RejectReason
from runtime.metrics import PREFIX

#: MSH-9 values the profile accepts (docs/integration-hl7.md); any other readable type is
#: `other`, an unreadable header `unknown`.
MESSAGE_TYPES = (
    "DFT^P03",
    "MDM^T02",
    "MDM^T04",
    "MDM^T06",
    "MDM^T08",
    "MDM^T10",
    "MDM^T11",
    "ORU^R01",
    "other",
    "unknown",
)
ACK_CODES = ("AA", "AE", "AR")
#: EhrDeadLetter reasons the gateway writes (schemas/ehr_deadletter.py).
DEAD_LETTER_REASONS = (
    *(r.value for r in RejectReason),
    "bad_framing",
    "too_large",
    "processing_error",
)
#: Framing faults (gateway/framing.py), by what happened.
FRAMING_EVENTS = (
    "outside_block",
    "missing_start_block",
    "block_interrupted",
    "too_large",
    "closed_mid_frame",
    "timed_out_mid_frame",
)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = f"{PREFIX}_mllp"
        self.messages = Counter(
            f"{p}_messages",
            "HL7 messages answered, by MSH-9 type and ACK code (MSA-1).",
            ["type", "ack"],
            registry=r,
        )
        self.connections_open = Gauge(f"{p}_connections_open", "Open MLLP connections.", registry=r)
        self.connections = Counter(f"{p}_connections", "MLLP connections accepted.", registry=r)
        self.ack_seconds = Histogram(
            f"{p}_ack_seconds",
            "Time from a complete message received to its ACK written, by ACK code.",
            ["ack"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.dead_letters = Counter(
            f"{p}_dead_letters",
            "EhrDeadLetter records written, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_letter_failures = Counter(
            f"{p}_dead_letter_failures",
            "Dead letters that could not be written (answered AR, or logged when nobody waits).",
            registry=r,
        )
        self.dead_letters_shrunk = Counter(
            f"{p}_dead_letters_shrunk",
            "Dead letters the broker refused as too large, written again in their smallest form "
            "(without the message; the topic's limit is lower than at start).",
            registry=r,
        )
        self.framing_errors = Counter(
            f"{p}_framing_errors",
            "MLLP framing faults, by kind.",
            ["event"],
            registry=r,
        )
        self.last_stored = Gauge(
            f"{p}_last_stored_timestamp_seconds",
            "Unix time of the last message the broker acknowledged.",
            registry=r,
        )
        # Series exist from the start (rate() and alerts see zeros, not gaps).
        for t in MESSAGE_TYPES:
            for a in ACK_CODES:
                self.messages.labels(type=t, ack=a)
        for a in ACK_CODES:
            self.ack_seconds.labels(ack=a)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)
        for event in FRAMING_EVENTS:
            self.framing_errors.labels(event=event)


def type_label(message_code: str | None, trigger_event: str | None) -> str:
    if message_code is None:
        return "unknown"
    label = f"{message_code}^{trigger_event or ''}"
    return label if label in MESSAGE_TYPES else "other"
