"""`therapy-compliance mllp-gateway`: the MLLP gateway program (gateway/)."""

from __future__ import annotations

import argparse

from runtime.settings import GatewaySettings, read_or_exit


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "mllp-gateway",
        help="accept HL7 v2 over MLLP, write each message to the inbound topic, ACK when durable",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gateway.server import gateway_main

    return gateway_main(read_or_exit(GatewaySettings, "therapy-compliance mllp-gateway"))
