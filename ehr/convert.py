"""`therapy-compliance convert --from hl7|fhir FILE`: EHR messages -> TherapyVisitCompleted v1
JSON Lines, offline, with the stream's join (ehr/join.py).

A visit is written when both parts are in (again, with a new event_id, when a later message
corrects it); at the end of the file every visit whose last state was not written is written
with what it has, as the stream does when the join's wait expires (`parts_missing`). Each
rejected message is one JSON object on stderr ({"message": N, "reason", "detail"}), each
warning one too ({"message": N, "warning", "detail"}: read on, not converted); a summary object
ends stderr. Exit status 1 when any message was rejected or a visit could not be
assembled, 2 when the file cannot be read, else 0. A UTF-8 byte-order mark at the very start
of the file is skipped (docs/rules.md "Input hygiene").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, TextIO

from ehr.fhir import FhirResult, duplicate_keys, parse_fhir, parse_resources
from ehr.hl7text import split_messages
from ehr.hl7v2 import parse_hl7v2_parts
from ehr.join import AssemblyProblem, VisitState, assemble, fold
from ehr.parts import AnyPart
from ehr.profile import EhrConfig
from ehr.rejection import EhrWarning, Rejection
from schemas.decode import UTF8_BOM

Source = Literal["hl7", "fhir"]


def convert_main(
    source: Source,
    path: str,
    out: BinaryIO,
    err: TextIO,
    config: EhrConfig,
    now: datetime | None = None,
) -> int:
    """`now` stands in for the arrival time of FHIR resources that carry no time of their own."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        err.write(json.dumps({"error": f"cannot read {path}: {exc.strerror}"}) + "\n")
        return 2
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]  # a file's BOM (Windows exports), as audit skips it
    run = _Run(out, err)
    received = now or datetime.now(UTC)
    results = _hl7(data, config) if source == "hl7" else _fhir(data, config, received)
    touched: list[str] = []
    last = None
    for number, result in results:
        if number != last:  # a message (or bundle) is applied whole before visits are written
            run.emit(touched)
            touched, last = [], number
        if isinstance(result, Rejection):
            run.reject(number, result)
        elif isinstance(result, EhrWarning):
            run.warn(number, result)
        else:
            key = run.add(number, result)
            if key is not None:
                touched.append(key)
    run.emit(touched)
    run.flush_partials()
    err.write(json.dumps({"summary": run.summary()}) + "\n")
    out.flush()
    return 1 if run.rejected or run.unassembled else 0


def _hl7(data: bytes, config: EhrConfig) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(split_messages(data), start=1):
        parsed = raw if isinstance(raw, Rejection) else parse_hl7v2_parts(raw, config)
        for result in [parsed] if isinstance(parsed, Rejection) else parsed:
            yield number, result


def _fhir(data: bytes, config: EhrConfig, received: datetime) -> Iterator[tuple[int, Any]]:
    """A Bundle (or one resource) as JSON, or NDJSON: each line a Bundle, or bare resources that
    are read together as one collection (a bulk export, whose lines reference each other)."""
    text = data.decode("utf-8", errors="replace").strip()
    results: list[tuple[int, FhirResult]] = []
    try:
        whole = json.loads(text)
    except ValueError:
        loose: list[dict[str, Any]] = []
        loose_lines: list[int] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                results.append((number, parse_fhir(line, config, received)))  # -> not_fhir
                continue
            # Duplicate keys are seen in the text only (docs/rules.md "Input hygiene").
            duplicate = duplicate_keys(line)
            if duplicate is not None:
                results.append((number, FhirResult(rejections=(duplicate,))))
            elif isinstance(obj, dict) and obj.get("resourceType") == "Bundle":
                results.append((number, parse_fhir(obj, config, received)))
            elif isinstance(obj, dict):
                loose.append(obj)
                loose_lines.append(number)
            else:
                results.append((number, parse_fhir(line, config, received)))
        if loose:
            # Read together, reported by line: each rejection names its resource's line (its
            # `entry`), one about no single resource the first; the parts are applied together.
            together = parse_resources(loose, config, received, loose_lines)
            for rejection in together.rejections:
                at = rejection.entry if rejection.entry is not None else loose_lines[0]
                results.append((at, FhirResult(rejections=(rejection,))))
            results.append((loose_lines[-1], FhirResult(parts=together.parts)))
    else:
        duplicate = duplicate_keys(text)
        if duplicate is not None:
            results.append((1, FhirResult(rejections=(duplicate,))))
        else:
            results.append((1, parse_fhir(whole, config, received)))
    for number, result in results:
        for rejection in result.rejections:
            yield number, rejection
        for warning in result.warnings:
            yield number, warning
        for part in result.parts:
            yield number, part


class _Run:
    def __init__(self, out: BinaryIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.states: dict[str, VisitState] = {}
        self.emitted: dict[str, str] = {}
        self.rejected = self.parts = self.visits = self.unassembled = self.warnings = 0

    def reject(self, number: int, rejection: Rejection) -> None:
        self.rejected += 1
        self.err.write(
            json.dumps(
                {"message": number, "reason": rejection.reason.value, "detail": rejection.detail}
            )
            + "\n"
        )

    def warn(self, number: int, warning: EhrWarning) -> None:
        """Read on, not converted: counted in the summary, not a failure (exit status)."""
        self.warnings += 1
        self.err.write(
            json.dumps(
                {"message": number, "warning": warning.reason.value, "detail": warning.detail}
            )
            + "\n"
        )

    def add(self, number: int, part: AnyPart) -> str | None:
        """The part's visit key, or None when the join refused it (the join's control id
        conflict, or a credit that cannot apply: reported like a rejected message, as the worker
        dead-letters it)."""
        key = part.visit.text
        folded = fold(self.states.get(key), part)
        if isinstance(folded, Rejection):
            self.reject(number, folded)
            return None
        self.states[key] = folded
        self.parts += 1
        return key

    def emit(self, keys: list[str]) -> None:
        for key in dict.fromkeys(keys):
            self._emit(key, partial_ok=False)

    def flush_partials(self) -> None:
        for key in self.states:
            self._emit(key, partial_ok=True)

    def _emit(self, key: str, *, partial_ok: bool) -> None:
        event = assemble(self.states[key], partial_ok=partial_ok)
        if event is None:
            return
        if isinstance(event, AssemblyProblem):
            if partial_ok:
                self.unassembled += 1
                self.err.write(
                    json.dumps({"visit": key, "reason": "not_assembled", "detail": event.detail})
                    + "\n"
                )
            return
        if self.emitted.get(key) == event["event_id"]:
            return
        self.emitted[key] = event["event_id"]
        self.visits += 1
        self.out.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    def summary(self) -> dict[str, int]:
        return {
            "parts": self.parts,
            "rejected": self.rejected,
            "warnings": self.warnings,
            "visits_written": self.visits,
            "not_assembled": self.unassembled,
        }
