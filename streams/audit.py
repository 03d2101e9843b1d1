"""`therapy-compliance audit [PATH|-]`: the stream worker's checks over a JSON Lines file.

Streams line by line (a 1 GB file is never held in memory; a single line is read at most up to
the size limit). Alerts go to stdout, one JSON object per line; each invalid line is reported on
stderr as {"line": N, "reason": ..., "detail": ...}; a summary object ends stderr. Exit 1 when
any line was invalid, after every valid line has been processed (EVENTS.md, "Command line").

Claim-level and episode state is kept as the worker keeps it: one `PatientHistory` per patient
in memory (same-day records, episodes of care, KX accrual), each visit evaluated with seq = its
line number, in input order, with the worker's horizons, so a backfill gives the same alerts as
the stream. `--ruleset DIR` runs with another rule data directory. The summary also counts the
visits whose episode start was never seen (episode rules not evaluated), those beyond the
episode horizon, the Medicare Part B lines of unknown amount (not in the KX accrual) and the
lines refused for their patient_ref, by problem (the worker's metric of the same name).

Input hygiene (docs/rules.md): a UTF-8 byte-order mark at the very start of the file is skipped
(Windows tools write one before the first line); anywhere else it makes its line invalid, as it
makes a Kafka record a dead letter. patient_ref's accepted alphabet is the worker's
TC_PATIENT_REF_PATTERN (read from the environment) unless `--patient-ref-pattern` says otherwise.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from compliance import Engine, PatientHistory
from compliance.ruleset import load_ruleset
from compliance.state import DEFAULT_HORIZON_DAYS
from schemas.common import DeadLetterReason
from schemas.decode import DEFAULT_MAX_BYTES, UTF8_BOM, Rejection, decode_visit
from schemas.patient_ref import DEFAULT_PATTERN, compile_pattern
from streams.settings import patient_ref_pattern_from_env

_CHUNK = 1 << 20
_PROGRESS_EVERY_S = 2.0


@dataclass
class AuditSummary:
    visits_read: int = 0
    invalid_lines: int = 0
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    episode_status: Counter[str] = field(default_factory=Counter)
    kx_unknown_amount_lines: int = 0
    patient_ref_rejections: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {
            "summary": {
                "visits_read": self.visits_read,
                "invalid_lines": self.invalid_lines,
                "alerts": sum(self.alerts_by_rule.values()),
                "alerts_by_rule": dict(sorted(self.alerts_by_rule.items())),
                "episode_status": dict(sorted(self.episode_status.items())),
                "kx_unknown_amount_lines": self.kx_unknown_amount_lines,
                "patient_ref_rejections": dict(sorted(self.patient_ref_rejections.items())),
            }
        }


def _lines(stream: BinaryIO, max_bytes: int) -> Iterator[bytes | None]:
    """Yield each line's bytes, or None for a line longer than max_bytes (skipped unread). A
    UTF-8 BOM at the very start of the file is dropped before the first line is measured: it is
    the file's, not the record's, so it does not count against max_bytes."""
    first = True
    while True:
        # +2: room for a trailing CRLF; on the first line, room for the file's BOM too.
        line = stream.readline(max_bytes + 2 + (len(UTF8_BOM) if first else 0))
        if first:
            first = False
            line = line.removeprefix(UTF8_BOM)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # discard the rest of the oversized line
                line = stream.readline(_CHUNK)
            yield None
            continue
        yield line


def run_audit(
    stream: BinaryIO,
    out: BinaryIO,
    err: TextIO,
    engine: Engine | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    patient_ref_pattern: re.Pattern[str] = DEFAULT_PATTERN,
) -> AuditSummary:
    engine = engine or Engine()
    histories: dict[str, PatientHistory] = {}
    summary = AuditSummary()
    progress = err.isatty()
    last = time.monotonic()
    for lineno, raw in enumerate(_lines(stream, max_bytes), start=1):
        if raw is not None and not raw.strip():
            continue  # blank lines (a trailing newline, spacing) are not records
        result = (
            decode_visit(raw.rstrip(b"\r\n"), max_bytes, patient_ref_pattern)
            if raw is not None
            else Rejection(DeadLetterReason.TOO_LARGE, f"line is over the {max_bytes}-byte limit")
        )
        if isinstance(result, Rejection):
            summary.invalid_lines += 1
            if result.patient_ref is not None:
                summary.patient_ref_rejections[result.patient_ref.value] += 1
            err.write(
                orjson.dumps(
                    {"line": lineno, "reason": result.reason.value, "detail": result.detail}
                ).decode()
                + "\n"
            )
            continue
        summary.visits_read += 1
        history = histories.get(result.patient_ref, PatientHistory())
        outcome = engine.evaluate(result, datetime.now(UTC), history, seq=lineno)
        assert outcome.history is not None
        histories[result.patient_ref] = outcome.history
        summary.episode_status[outcome.episode_status.value] += 1
        summary.kx_unknown_amount_lines += outcome.kx_unknown_amount_lines
        for alert in outcome.alerts:
            summary.alerts_by_rule[alert.rule_id] += 1
            out.write(alert.to_json() + b"\n")
        if progress and lineno % 1000 == 0 and time.monotonic() - last > _PROGRESS_EVERY_S:
            last = time.monotonic()
            err.write(f"\r{summary.visits_read} visits, {summary.invalid_lines} invalid ...")
            err.flush()
    if progress:
        err.write("\r")
    err.write(orjson.dumps(summary.as_json()).decode() + "\n")
    out.flush()
    return summary


def audit_main(
    path: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ruleset: str | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    episode_horizon_days: int | None = None,
    patient_ref_pattern: str | None = None,
) -> int:
    """`horizon_days`: same-day details kept (TC_HISTORY_HORIZON_DAYS); `episode_horizon_days`:
    episode and KX state kept (the worker's episode horizon; default 400, or `horizon_days` when
    longer), in days before the patient's newest date of service; `patient_ref_pattern`:
    patient_ref's accepted alphabet (None: TC_PATIENT_REF_PATTERN, else the default)."""
    try:
        pattern = compile_pattern(
            patient_ref_pattern_from_env() if patient_ref_pattern is None else patient_ref_pattern
        )
    except ValueError as exc:
        print(f"therapy-compliance audit: patient_ref pattern: {exc}", file=sys.stderr)
        return 2
    try:
        rules = load_ruleset(Path(ruleset)) if ruleset is not None else None
    except (OSError, ValueError) as exc:
        print(f"therapy-compliance audit: rule set {ruleset}: {exc}", file=sys.stderr)
        return 2
    try:
        engine = Engine(
            ruleset=rules, horizon_days=horizon_days, episode_horizon_days=episode_horizon_days
        )
    except ValueError as exc:  # horizons out of range
        print(f"therapy-compliance audit: {exc}", file=sys.stderr)
        return 2
    try:
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"therapy-compliance audit: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    with stream:
        try:
            summary = run_audit(
                stream,
                sys.stdout.buffer,
                sys.stderr,
                engine=engine,
                max_bytes=max_bytes,
                patient_ref_pattern=pattern,
            )
        except BrokenPipeError:  # `audit big.jsonl | head` is normal use, not an error
            return 0
    return 1 if summary.invalid_lines else 0
