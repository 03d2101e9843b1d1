"""Write the JSON Schema files of the v1 contracts: `python -m schemas.export [--check]`.

The files in schemas/json/ are generated from the models; a test fails when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.alert import ComplianceAlert
from schemas.checked import VisitChecked
from schemas.deadletter import DeadLetter
from schemas.ehr_deadletter import EhrDeadLetter
from schemas.notice import ComplianceNotice
from schemas.visit import TherapyVisitCompleted
from schemas.visit_status import VisitStatus

HERE = Path(__file__).parent
OUT_DIR = HERE / "json"
MODELS: dict[str, type[BaseModel]] = {
    "therapy_visit_completed.v1": TherapyVisitCompleted,
    "compliance_alert.v1": ComplianceAlert,
    "visit_checked.v1": VisitChecked,
    "dead_letter.v1": DeadLetter,
    "ehr_dead_letter.v1": EhrDeadLetter,
    "visit_status.v1": VisitStatus,
    "compliance_notice.v1": ComplianceNotice,
}


#: (default topic name, direction, key, schema file stem) per EVENTS.md "Topics".
CHANNELS = [
    ("therapy.visit.completed.v1", "receive", "patient_ref", "therapy_visit_completed.v1"),
    ("billing.compliance.alert.v1", "send", "visit_id", "compliance_alert.v1"),
    ("therapy.visit.checked.v1", "send", "visit_id", "visit_checked.v1"),
    ("therapy.visit.deadletter.v1", "send", "original key", "dead_letter.v1"),
    ("ehr.deadletter.v1", "send", "patient_ref when known", "ehr_dead_letter.v1"),
    ("billing.visit.status.v1", "send", "visit_id (compacted)", "visit_status.v1"),
    ("clinic.compliance.notice.v1", "send", "patient_ref", "compliance_notice.v1"),
]


def asyncapi() -> dict[str, object]:
    """An AsyncAPI 3.0 description of the service's topics, pointing at the JSON Schema files."""
    channels: dict[str, object] = {}
    operations: dict[str, object] = {}
    messages: dict[str, object] = {}
    for topic, action, key, stem in CHANNELS:
        name = stem.replace(".v1", "").replace("_", "-")
        messages[name] = {
            "name": MODELS[stem].__name__,
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./json/{stem}.schema.json"},
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": key}}},
        }
        channels[name] = {
            "address": topic,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"{action}-{name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "therapy-compliance",
            "version": "1.0.0",
            "description": "Event contracts v1 (EVENTS.md). Topic names are defaults.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered() -> dict[str, str]:
    out = {"asyncapi.json": json.dumps(asyncapi(), indent=2) + "\n"}
    for name, model in MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{name}.schema.json",
            **schema,
        }
        out[f"json/{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = rendered()
    if "--check" in args:
        stale = [
            n
            for n, text in files.items()
            if not (HERE / n).exists() or (HERE / n).read_text() != text
        ]
        if stale:
            print(
                f"stale JSON Schema files: {', '.join(stale)}; run python -m schemas.export",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT_DIR.mkdir(exist_ok=True)
    for n, text in files.items():
        (HERE / n).write_text(text)
        print(f"wrote schemas/{n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
