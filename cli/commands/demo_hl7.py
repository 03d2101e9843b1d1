"""`therapy-compliance demo-hl7`: synthetic DFT^P03 and MDM^T02 traffic to the MLLP gateway."""

from __future__ import annotations

import argparse
import sys

from runtime.settings import GatewaySettings, read_or_exit, settings_from_env_or_exit


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo-hl7", help="send realistic DFT^P03 and MDM^T02 messages to the MLLP gateway"
    )
    p.add_argument("--count", type=int, default=100, help="visits to send (default 100)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--print-profile",
        action="store_true",
        help="print the shipped integration profile with the demo's commercial payers added "
        "(for TC_EHR_PROFILE) and exit; sends nothing",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.print_profile:
        from synthetic.hl7 import demo_profile_text

        sys.stdout.write(demo_profile_text())
        return 0
    from cli.demo_hl7 import demo_hl7_main

    # The gateway's address from its section; the join's wait from the worker's (it says when
    # the one-part visits will come).
    join_wait_s = settings_from_env_or_exit("therapy-compliance demo-hl7").join_wait_s
    return demo_hl7_main(read_or_exit(GatewaySettings), args.count, args.seed, join_wait_s)
