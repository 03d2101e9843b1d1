"""`therapy-compliance convert --from hl7|fhir PATH`: the EHR path's parsing and join, offline."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Literal

from runtime.settings import settings_from_env_or_exit


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "convert",
        help="HL7 v2 / FHIR R4B messages -> TherapyVisitCompleted v1 JSON Lines (offline)",
    )
    p.add_argument("--from", dest="source", choices=["hl7", "fhir"], required=True)
    p.add_argument("path", help="file of messages, or - for stdin")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ehr import ProfileError, convert_main
    from ehr.profile import DEFAULT_PROFILE_PATH

    settings = settings_from_env_or_exit()
    try:
        config = settings.ehr_config()
    except (ProfileError, ValueError) as exc:
        print(
            f"therapy-compliance convert: {exc} (TC_EHR_PATIENT_KEY, TC_EHR_PROFILE)",
            file=sys.stderr,
        )
        return 2
    if settings.ehr_profile is None:
        # Offline, the shipped example may do (the tests, the samples), but never silently: its
        # timezone decides every date. One JSON line, like the rest of convert's stderr.
        detail = (
            f"TC_EHR_PROFILE is unset: using the shipped example profile {DEFAULT_PROFILE_PATH} "
            f"(timezone {config.profile.timezone!r}); set TC_EHR_PROFILE to your copy"
        )
        print(json.dumps({"warning": "example_profile", "detail": detail}), file=sys.stderr)
    kind: Literal["hl7", "fhir"] = "hl7" if args.source == "hl7" else "fhir"
    return convert_main(kind, args.path, sys.stdout.buffer, sys.stderr, config)
