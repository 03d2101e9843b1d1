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
from schemas.visit import TherapyVisitCompleted

OUT_DIR = Path(__file__).parent / "json"
MODELS: dict[str, type[BaseModel]] = {
    "therapy_visit_completed.v1": TherapyVisitCompleted,
    "compliance_alert.v1": ComplianceAlert,
    "visit_checked.v1": VisitChecked,
    "dead_letter.v1": DeadLetter,
}


def rendered() -> dict[str, str]:
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{name}.schema.json",
            **schema,
        }
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = rendered()
    if "--check" in args:
        stale = [
            n
            for n, text in files.items()
            if not (OUT_DIR / n).exists() or (OUT_DIR / n).read_text() != text
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
        (OUT_DIR / n).write_text(text)
        print(f"wrote {OUT_DIR / n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
