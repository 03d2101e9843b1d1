"""`therapy-compliance audit [PATH|-]`: the stream worker's checks over a JSON Lines file.

Streams line by line (a 1 GB file is never held in memory; a single line is read at most up to
the size limit). Alerts go to stdout, one JSON object per line; each invalid line is reported on
stderr as {"line": N, "reason": ..., "detail": ...}; a summary object ends stderr. Exit 1 when
any line was invalid, after every valid line has been processed (EVENTS.md, "Command line").

Claim-level and episode state is kept as the worker keeps it: one `PatientHistory` per patient
in memory (same-day records, episodes of care, KX accrual), each visit evaluated with seq = its
line number, in input order, with the worker's horizons, so a backfill gives the same alerts as
the stream. The rule set is the worker's, read from the same environment by the same loader
(runtime/rules.py): TC_RULESET_DIR, TC_NCCI_PTP_FILES, TC_NCCI_MUE_FILES, TC_FEE_FILES;
`--ruleset DIR` replaces TC_RULESET_DIR. The summary names the `ruleset_version` and also counts the
visits whose episode start was never seen (episode rules not evaluated), those beyond the
episode horizon, the Medicare Part B lines of unknown amount (not in the KX accrual) and the
lines refused for their patient_ref, by problem (the worker's metric of the same name).

Input hygiene (docs/rules.md): a UTF-8 byte-order mark at the very start of the file is skipped
(Windows tools write one before the first line); anywhere else it makes its line invalid, as it
makes a Kafka record a dead letter. patient_ref's accepted alphabet is the worker's
TC_PATIENT_REF_PATTERN (read from the environment) unless `--patient-ref-pattern` says otherwise.

Output order: alerts in input line order, and a line's alerts in the engine's rule order (then
the alerts its re-judgement raised on the patient's other visits, as the worker publishes them);
invalid lines on stderr in line order, then the summary. `--status-out PATH` writes the
`VisitStatus` v1 records (EVENTS.md) to PATH in the same order as the worker publishes them:
per line, the visit's own status first, then those of the other visits it re-judged. `--jobs N` (issue 13) gives exactly
this output, byte for byte except `detected_at` (the clock): N processes each read the whole
file and own the lines of the patients with crc32(patient_ref) % N == their index (a line whose
patient_ref cannot be read without the full decoder, or that has none, goes by line number), so
each patient's visits are evaluated by one process, in line order, with seq = line number, as
in one process. Each process writes its alerts and invalid lines tagged with their line numbers
to a temporary file; the parent merges them by line number and adds up the summaries. Standard
input is first copied to a temporary file (the processes read the file each). Needs the `fork`
start method (Linux).
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, BinaryIO, TextIO

import orjson

from compliance import Engine, PatientHistory
from compliance.state import DEFAULT_HORIZON_DAYS
from runtime.rules import RuleLoadError, load_rules
from runtime.settings import patient_ref_pattern_from_env, rule_files_from_env
from schemas.common import DeadLetterReason
from schemas.decode import DEFAULT_MAX_BYTES, UTF8_BOM, Rejection, decode_visit
from schemas.patient_ref import DEFAULT_PATTERN, compile_pattern

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
    #: The rule set the alerts come from (the worker stamps the same on its alerts).
    ruleset_version: str = ""
    #: With --as-of: lines dated after it, left out; notices written, by kind.
    after_as_of: int = 0
    notices_by_kind: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        extra: dict[str, object] = {}
        if self.after_as_of:
            extra["visits_after_as_of"] = self.after_as_of
        if self.notices_by_kind:
            extra["notices"] = sum(self.notices_by_kind.values())
            extra["notices_by_kind"] = dict(sorted(self.notices_by_kind.items()))
        return {
            "summary": {
                **extra,
                "ruleset_version": self.ruleset_version,
                "visits_read": self.visits_read,
                "invalid_lines": self.invalid_lines,
                "alerts": sum(self.alerts_by_rule.values()),
                "alerts_by_rule": dict(sorted(self.alerts_by_rule.items())),
                "episode_status": dict(sorted(self.episode_status.items())),
                "kx_unknown_amount_lines": self.kx_unknown_amount_lines,
                "patient_ref_rejections": dict(sorted(self.patient_ref_rejections.items())),
            }
        }

    def add(self, other: AuditSummary) -> None:
        self.ruleset_version = self.ruleset_version or other.ruleset_version
        self.visits_read += other.visits_read
        self.invalid_lines += other.invalid_lines
        self.alerts_by_rule.update(other.alerts_by_rule)
        self.episode_status.update(other.episode_status)
        self.kx_unknown_amount_lines += other.kx_unknown_amount_lines
        self.patient_ref_rejections.update(other.patient_ref_rejections)
        self.after_as_of += other.after_as_of
        self.notices_by_kind.update(other.notices_by_kind)


@dataclass(frozen=True, slots=True)
class NoticeOptions:
    """`--notices-out PATH --as-of DATE` (EVENTS.md "ComplianceNotice v1"): the notices a
    backfill would have produced up to `as_of` - the visits dated on or before it (the later
    ones are left out), their notices as checked, then per patient the daily runs of every
    date from its first date of service through `as_of` (each obligation once, as of its
    first date: compliance/notices.py `due_between`). `as_of` None: the newest date read."""

    out: BinaryIO | None
    as_of: date | None = None


@dataclass(frozen=True, slots=True)
class Shard:
    """This process evaluates the lines it owns out of `count` (see the module doc) and tags
    each output line with its input line number for the merge."""

    index: int
    count: int


def owner(value: bytes, lineno: int, count: int, max_bytes: int, pattern: re.Pattern[str]) -> int:
    """The shard (0..count-1) evaluating this record: by its patient_ref, so every visit of one
    patient goes to one process; records with no readable patient_ref by line number (they
    are invalid: any shard reports them identically). orjson reads patient_ref (~3 us); a
    record orjson refuses but the decoder could accept (1e400 in an ignored extra field)
    is decoded in full, so a valid visit is never routed by its line number."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        obj = None
        decoded = decode_visit(value, max_bytes, pattern)
        if not isinstance(decoded, Rejection):
            return zlib.crc32(decoded.patient_ref.encode()) % count
    if isinstance(obj, dict):
        ref = obj.get("patient_ref")
        if isinstance(ref, str) and ref.isascii():  # a valid one is printable ASCII
            return zlib.crc32(ref.encode()) % count
    return lineno % count


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
    shard: Shard | None = None,
    status_out: BinaryIO | None = None,
    notices: NoticeOptions | None = None,
) -> AuditSummary:
    """Audit `stream` in one process; with `shard`, only that shard's lines, each output line
    prefixed with b"<line number>\t" and no summary written (the parent merges). `status_out`:
    the `VisitStatus` records, in the order the worker publishes them (EVENTS.md)."""
    engine = engine or Engine()
    histories: dict[str, PatientHistory] = {}
    as_of = notices.as_of if notices is not None else None
    notice_out = notices.out if notices is not None else None
    #: Per patient, the first date of service read (where its daily runs start).
    first_dates: dict[str, date] = {}
    #: Every notice id written: each once (EVENTS.md), also past the ids a patient's state
    #: remembers (PatientHistory.sent).
    written: set[str] = set()
    newest: date | None = None
    summary = AuditSummary(ruleset_version=engine.ruleset_version)
    progress = err.isatty()
    last = time.monotonic()
    lineno = 0
    for lineno, raw in enumerate(_lines(stream, max_bytes), start=1):
        if raw is not None and not raw.strip():
            continue  # blank lines (a trailing newline, spacing) are not records
        value = raw.rstrip(b"\r\n") if raw is not None else None
        tag = b""
        if shard is not None:
            own = (
                owner(value, lineno, shard.count, max_bytes, patient_ref_pattern)
                if value is not None
                else lineno % shard.count
            )
            if own != shard.index:
                continue
            tag = b"%d\t" % lineno
        result = (
            decode_visit(value, max_bytes, patient_ref_pattern)
            if value is not None
            else Rejection(DeadLetterReason.TOO_LARGE, f"line is over the {max_bytes}-byte limit")
        )
        if isinstance(result, Rejection):
            summary.invalid_lines += 1
            if result.patient_ref is not None:
                summary.patient_ref_rejections[result.patient_ref.value] += 1
            err.write(
                tag.decode()
                + orjson.dumps(
                    {"line": lineno, "reason": result.reason.value, "detail": result.detail}
                ).decode()
                + "\n"
            )
            continue
        if as_of is not None and result.date_of_service > as_of:
            summary.after_as_of += 1
            continue
        summary.visits_read += 1
        day = result.date_of_service
        if day < first_dates.setdefault(result.patient_ref, day):
            first_dates[result.patient_ref] = day
        newest = day if newest is None or day > newest else newest
        history = histories.get(result.patient_ref, PatientHistory())
        outcome = engine.evaluate(result, datetime.now(UTC), history, seq=lineno)
        assert outcome.history is not None
        histories[result.patient_ref] = outcome.history
        summary.episode_status[outcome.episode_status.value] += 1
        summary.kx_unknown_amount_lines += outcome.kx_unknown_amount_lines
        # As the worker publishes: the visit's alerts, then those a re-judgement raised on
        # other visits of the patient, on the alert topic; its statuses on the status topic.
        for alert in (*outcome.alerts, *outcome.raised):
            summary.alerts_by_rule[alert.rule_id] += 1
            out.write(tag + alert.to_json() + b"\n")
        if status_out is not None:
            for status in outcome.statuses:
                status_out.write(tag + status.to_json() + b"\n")
        if notice_out is not None:
            for n in outcome.notices:
                if n.notice_id not in written:
                    written.add(n.notice_id)
                    summary.notices_by_kind[n.kind.value] += 1
                    notice_out.write(tag + n.model_dump_json().encode() + b"\n")
        if progress and lineno % 1000 == 0 and time.monotonic() - last > _PROGRESS_EVERY_S:
            last = time.monotonic()
            err.write(f"\r{summary.visits_read} visits, {summary.invalid_lines} invalid ...")
            err.flush()
    if notice_out is not None:
        last_line = lineno if shard is not None else None
        _daily_runs(
            engine, histories, first_dates, as_of or newest, notice_out, summary, last_line, written
        )
    if progress:
        err.write("\r")
    if shard is None:
        err.write(orjson.dumps(summary.as_json()).decode() + "\n")
    out.flush()
    if status_out is not None:
        status_out.flush()
    return summary


def _daily_runs(
    engine: Engine,
    histories: dict[str, PatientHistory],
    first_dates: dict[str, date],
    through: date | None,
    out: BinaryIO,
    summary: AuditSummary,
    last_line: int | None,
    written: set[str],
) -> None:
    """The daily runs after the visits: per patient (in the order first read), the notices due
    on each date from its first date of service through `through`, each once. Tagged after
    every line (one process of --jobs: the merge puts them after the visits' notices)."""
    if through is None:
        return
    now = datetime.now(UTC)
    tag = b"%d\t" % (last_line + 1) if last_line is not None else b""
    for patient, first in first_dates.items():
        found, histories[patient] = engine.notices_due(
            histories[patient], patient, first, through, now
        )
        for n in found:
            if n.notice_id not in written:
                written.add(n.notice_id)
                summary.notices_by_kind[n.kind.value] += 1
                out.write(tag + n.model_dump_json().encode() + b"\n")


def _shard_main(
    path: str,
    shard: Shard,
    engine: Engine,
    max_bytes: int,
    pattern: re.Pattern[str],
    workdir: str,
    statuses: bool,
    as_of: date | None = None,
    notices: bool = False,
) -> None:
    """One process of `--jobs N` (forked: the engine is inherited, not pickled)."""
    base = os.path.join(workdir, str(shard.index))
    with (
        open(path, "rb") as stream,
        open(base + ".out", "wb") as out,
        open(base + ".err", "w", encoding="utf-8") as err,
        open(base + ".status", "wb") as status_out,
        open(base + ".notices", "wb") as notice_out,
    ):
        summary = run_audit(
            stream,
            out,
            err,
            engine,
            max_bytes,
            pattern,
            shard,
            status_out if statuses else None,
            NoticeOptions(notice_out if notices else None, as_of),
        )
    with open(base + ".summary", "wb") as f:
        pickle.dump(summary, f)


def _tagged(f: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for row in f:
        tag, _, payload = row.partition(b"\t")
        yield int(tag), payload


def _merge(files: Iterable[IO[bytes]], write: Callable[[bytes], object]) -> None:
    """Lines of every shard in line-number order (each shard's file is in that order; a
    line's rows come from one shard, in their order there: heapq.merge is stable)."""
    for _, payload in heapq.merge(*(_tagged(f) for f in files), key=lambda t: t[0]):
        write(payload)


def run_audit_jobs(
    path: str | None,
    stdin: BinaryIO,
    out: BinaryIO,
    err: TextIO,
    engine: Engine,
    jobs: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    patient_ref_pattern: re.Pattern[str] = DEFAULT_PATTERN,
    status_out: BinaryIO | None = None,
    notices: NoticeOptions | None = None,
) -> AuditSummary:
    """`audit --jobs N` (N >= 2): the same output as `run_audit` (module doc). `path` None
    reads `stdin`, copied to a temporary file first. RuntimeError when a process fails."""
    if jobs < 2:
        raise ValueError("run_audit_jobs needs jobs >= 2")
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="tc-audit-") as workdir:
        if path is None:
            path = os.path.join(workdir, "stdin.jsonl")
            with open(path, "wb") as spool:
                shutil.copyfileobj(stdin, spool, _CHUNK)
        procs = [
            ctx.Process(
                target=_shard_main,
                args=(
                    path,
                    Shard(i, jobs),
                    engine,
                    max_bytes,
                    patient_ref_pattern,
                    workdir,
                    status_out is not None,
                    notices.as_of if notices is not None else None,
                    notices is not None and notices.out is not None,
                ),
                name=f"audit-{i}",
            )
            for i in range(jobs)
        ]
        out.flush()  # a forked child flushes the std streams it inherited at exit
        err.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"audit process(es) {', '.join(failed)} failed (see above)")
        bases = [os.path.join(workdir, str(i)) for i in range(jobs)]
        summary = AuditSummary()
        for base in bases:
            with open(base + ".summary", "rb") as f:
                summary.add(pickle.load(f))  # our own child's file
        errs = [open(b + ".err", "rb") for b in bases]  # noqa: SIM115 - closed below
        try:
            _merge(errs, lambda payload: err.write(payload.decode()))
        finally:
            for f in errs:
                f.close()
        err.write(orjson.dumps(summary.as_json()).decode() + "\n")
        _merge_files([b + ".out" for b in bases], out)
        if status_out is not None:
            _merge_files([b + ".status" for b in bases], status_out)
        if notices is not None and notices.out is not None:
            _merge_files([b + ".notices" for b in bases], notices.out)
    return summary


def _merge_files(paths: list[str], into: BinaryIO) -> None:
    files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed below
    try:
        _merge(files, into.write)
    finally:
        for f in files:
            f.close()
    into.flush()


def chosen_pattern(option: str | None) -> re.Pattern[str]:
    """The patient_ref alphabet audit (and compare-rulesets) check against: the option, else
    the worker's TC_PATIENT_REF_PATTERN, else the default; ValueError when it is unusable."""
    return compile_pattern(patient_ref_pattern_from_env() if option is None else option)


def audit_main(
    path: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ruleset: str | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    episode_horizon_days: int | None = None,
    patient_ref_pattern: str | None = None,
    jobs: int = 1,
    status_out: str | None = None,
    notices_out: str | None = None,
    as_of: date | None = None,
) -> int:
    """`horizon_days`: same-day details kept (TC_HISTORY_HORIZON_DAYS); `episode_horizon_days`:
    episode and KX state kept (the worker's episode horizon; default 400, or `horizon_days` when
    longer), in days before the patient's newest date of service; `patient_ref_pattern`:
    patient_ref's accepted alphabet (None: TC_PATIENT_REF_PATTERN, else the default);
    `jobs`: processes (module doc; the same output for any number); `status_out`: a file
    for the `VisitStatus` records (EVENTS.md), in the order the worker publishes them."""
    if jobs < 1:
        print(f"therapy-compliance audit: --jobs must be 1 or more (got {jobs})", file=sys.stderr)
        return 2
    try:
        pattern = chosen_pattern(patient_ref_pattern)
    except ValueError as exc:
        print(f"therapy-compliance audit: patient_ref pattern: {exc}", file=sys.stderr)
        return 2
    try:
        files = rule_files_from_env()
    except ValueError as exc:
        print(f"therapy-compliance audit: {exc}", file=sys.stderr)
        return 2
    try:  # the worker's loader (runtime/rules.py): the same environment, the same rules
        rules = load_rules(files, Path(ruleset) if ruleset is not None else None)
    except RuleLoadError as exc:  # names the file and where it came from
        print(f"therapy-compliance audit: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = ruleset if ruleset is not None else files.ruleset_dir or "(the package's)"
        print(f"therapy-compliance audit: rule set {where}: {exc}", file=sys.stderr)
        return 2
    try:
        engine = Engine(
            ruleset=rules, horizon_days=horizon_days, episode_horizon_days=episode_horizon_days
        )
    except ValueError as exc:  # horizons out of range
        print(f"therapy-compliance audit: {exc}", file=sys.stderr)
        return 2
    try:
        statuses = open(status_out, "wb") if status_out is not None else None  # noqa: SIM115
    except OSError as exc:
        print(
            f"therapy-compliance audit: cannot write {status_out}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    try:
        notices = open(notices_out, "wb") if notices_out is not None else None  # noqa: SIM115
    except OSError as exc:
        print(
            f"therapy-compliance audit: cannot write {notices_out}: {exc.strerror}",
            file=sys.stderr,
        )
        if statuses is not None:
            statuses.close()
        return 2
    options = NoticeOptions(notices, as_of) if notices is not None or as_of else None
    try:
        return _audit(path, engine, jobs, max_bytes, pattern, statuses, options)
    finally:
        if statuses is not None:
            statuses.close()
        if notices is not None:
            notices.close()


def _audit(
    path: str,
    engine: Engine,
    jobs: int,
    max_bytes: int,
    pattern: re.Pattern[str],
    statuses: BinaryIO | None,
    notices: NoticeOptions | None = None,
) -> int:
    if jobs > 1:
        if path != "-" and not os.path.isfile(path):
            print(f"therapy-compliance audit: cannot read {path}: not a file", file=sys.stderr)
            return 2
        try:
            summary = run_audit_jobs(
                None if path == "-" else path,
                sys.stdin.buffer,
                sys.stdout.buffer,
                sys.stderr,
                engine,
                jobs,
                max_bytes,
                pattern,
                statuses,
                notices,
            )
        except BrokenPipeError:
            return 0
        except (OSError, RuntimeError) as exc:
            print(f"therapy-compliance audit: {exc}", file=sys.stderr)
            return 2
        return 1 if summary.invalid_lines else 0
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
                status_out=statuses,
                notices=notices,
            )
        except BrokenPipeError:  # `audit big.jsonl | head` is normal use, not an error
            return 0
    return 1 if summary.invalid_lines else 0
