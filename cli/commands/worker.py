"""`therapy-compliance worker`: the stream worker program (streams/), exactly
`faust -A streams.app worker`."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run the stream worker (exactly faust -A streams.app worker)")
    p.add_argument("faust_args", nargs=argparse.REMAINDER, help="further `faust worker` options")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    run_worker(args.faust_args)  # settings are read once, by the app (streams.app)
