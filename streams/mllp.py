"""The MLLP gateway (`therapy-compliance mllp-gateway`). Placeholder until the gateway lands."""

from __future__ import annotations

from streams.settings import Settings


def gateway_main(settings: Settings) -> int:
    raise NotImplementedError("the MLLP gateway is not implemented yet")
