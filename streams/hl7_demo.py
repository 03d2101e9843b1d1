"""The demo HL7 sender (`therapy-compliance demo-hl7`). Placeholder until it lands."""

from __future__ import annotations

from streams.settings import Settings


def demo_hl7_main(settings: Settings, count: int, seed: int) -> int:
    raise NotImplementedError("the demo HL7 sender is not implemented yet")
