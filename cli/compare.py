"""`therapy-compliance compare-rulesets OLD_DIR NEW_DIR HISTORY.jsonl [--json]`: a dry run of a
rule-data update (e.g. a quarterly NCCI file) over a history of visits.

Audits the history twice, with the old and with the new rule set, exactly as `audit` does
(per-patient state across lines, seq = line number), and prints per rule the alerts the update
would add and remove. Alerts are matched by alert id (event, rule, line set), so a changed
message or amount alone is neither added nor removed. Each side is exactly its directory (the
worker's TC_NCCI_*/TC_FEE_FILES are not added): the comparison is of the two directories.

Output: a table naming each rule set's files (role, name, first 12 hex digits of SHA-256, and
whether the update keeps, changes, adds or removes it), or one JSON object with `--json`. The
history's invalid lines are reported as `audit` reports them (one {"line", "reason", "detail"}
object per line on stderr, counted in the report) and the valid lines are still compared.
The history is read as `audit` reads it (the same decoder and validation), with the same
patient_ref alphabet: `--patient-ref-pattern`, else the worker's TC_PATIENT_REF_PATTERN from the
environment (runtime/settings.py patient_ref_pattern_from_env, as audit), so both count the same
invalid lines.
Exit 0; 1 when any history line was invalid; 2 when a rule set (the message says OLD or NEW),
the history or the patient_ref pattern cannot be read.
"""

from __future__ import annotations

import io
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import orjson

from cli.audit import AuditSummary, chosen_pattern, run_audit
from compliance import Engine
from compliance.ruleset import RuleSet, load_ruleset
from schemas.patient_ref import DEFAULT_PATTERN


class CompareError(ValueError):
    """A rule set or the history cannot be read; the message names which (OLD, NEW, HISTORY)."""


def _ruleset(label: str, directory: Path) -> RuleSet:
    try:
        return load_ruleset(directory)
    except (OSError, ValueError) as exc:  # the message names the file at fault
        raise CompareError(f"{label} rule set {directory}: {exc}") from exc


def patient_ref_pattern(option: str | None) -> re.Pattern[str]:
    """audit's reading: the option, else TC_PATIENT_REF_PATTERN from the environment, else the
    default alphabet; CompareError when it is not a usable pattern."""
    try:
        return chosen_pattern(option)
    except ValueError as exc:
        raise CompareError(f"patient_ref pattern: {exc}") from None


def _audit(
    engine: Engine, history: Path, pattern: re.Pattern[str]
) -> tuple[dict[str, dict[str, object]], AuditSummary, str]:
    """Alerts by id, the summary and the invalid lines' reports (audit's stderr lines)."""
    out, err = io.BytesIO(), io.StringIO()
    try:
        with history.open("rb") as stream:
            summary = run_audit(stream, out, err, engine=engine, patient_ref_pattern=pattern)
    except OSError as exc:
        raise CompareError(f"HISTORY {history}: {exc.strerror or exc}") from exc
    alerts = {}
    for raw in out.getvalue().splitlines():
        alert = orjson.loads(raw)
        alerts[alert["alert_id"]] = alert
    invalid = "".join(x + "\n" for x in err.getvalue().splitlines()[:-1])  # all but the summary
    return alerts, summary, invalid


def _files(rules: RuleSet) -> list[dict[str, str]]:
    return [{"role": r, "name": n, "sha256": h} for r, n, h in rules.files]


def compare(
    old_dir: Path, new_dir: Path, history: Path, pattern: re.Pattern[str] = DEFAULT_PATTERN
) -> dict[str, object]:
    """The report; its `invalid` holds the history's invalid-line reports (audit's form).
    `pattern`: patient_ref's accepted alphabet (`patient_ref_pattern`)."""
    old_rules, new_rules = _ruleset("OLD", old_dir), _ruleset("NEW", new_dir)
    old, summary, invalid = _audit(Engine(ruleset=old_rules), history, pattern)
    new, _, _ = _audit(Engine(ruleset=new_rules), history, pattern)  # the same lines invalid
    added = [new[k] for k in sorted(new.keys() - old.keys())]
    removed = [old[k] for k in sorted(old.keys() - new.keys())]
    added_by = Counter(str(a["rule_id"]) for a in added)
    removed_by = Counter(str(a["rule_id"]) for a in removed)
    rules = sorted(added_by.keys() | removed_by.keys())
    return {
        "old_dir": str(old_dir),
        "new_dir": str(new_dir),
        "old_ruleset": old_rules.version,
        "new_ruleset": new_rules.version,
        "old_files": _files(old_rules),
        "new_files": _files(new_rules),
        "visits_read": summary.visits_read,
        "invalid_lines": summary.invalid_lines,
        "invalid": [orjson.loads(x) for x in invalid.splitlines()],
        "alerts_old": len(old),
        "alerts_new": len(new),
        "by_rule": {r: {"added": added_by[r], "removed": removed_by[r]} for r in rules},
        "added": [_brief(a) for a in added],
        "removed": [_brief(a) for a in removed],
    }


def _brief(alert: dict[str, object]) -> dict[str, object]:
    keys = ("rule_id", "alert_id", "visit_id", "date_of_service", "cpt", "line_ids", "message")
    return {k: alert.get(k) for k in keys}


def _file_rows(report: dict[str, object]) -> list[tuple[str, str, str, str]]:
    """(file, OLD sha, NEW sha, change) for every file of either rule set, OLD's order first."""

    def by_key(files: object) -> dict[str, str]:
        assert isinstance(files, list)
        return {
            (f["name"] if f["role"] == f["name"] else f"{f['role']}: {f['name']}"): f["sha256"]
            for f in files
        }

    old, new = by_key(report["old_files"]), by_key(report["new_files"])
    rows = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        change = (
            "added" if a is None else "removed" if b is None else "same" if a == b else "changed"
        )
        rows.append((key, a[:12] if a else "-", b[:12] if b else "-", change))
    return rows


def _table(report: dict[str, object], out: TextIO) -> None:
    out.write(
        f"OLD rule set {report['old_ruleset']} ({report['old_dir']}): "
        f"{report['alerts_old']} alerts\n"
    )
    out.write(
        f"NEW rule set {report['new_ruleset']} ({report['new_dir']}): "
        f"{report['alerts_new']} alerts\n"
    )
    rows = _file_rows(report)
    width = max(len("file"), *(len(r[0]) for r in rows))
    out.write(f"{'file':<{width}}  {'OLD sha256':<12}  {'NEW sha256':<12}  change\n")
    for name, a, b, change in rows:
        out.write(f"{name:<{width}}  {a:<12}  {b:<12}  {change}\n")
    out.write(f"history: {report['visits_read']} visits read")
    if report["invalid_lines"]:
        out.write(f", {report['invalid_lines']} invalid lines (on stderr; not compared)")
    out.write("\n")
    by_rule = report["by_rule"]
    assert isinstance(by_rule, dict)
    if not by_rule:
        out.write("no alert added or removed\n")
        return
    width = max(len("rule_id"), *(len(r) for r in by_rule))
    out.write(f"{'rule_id':<{width}}  {'added':>7}  {'removed':>7}\n")
    for rule, counts in by_rule.items():
        out.write(f"{rule:<{width}}  {counts['added']:>7}  {counts['removed']:>7}\n")


def compare_main(
    old_dir: str,
    new_dir: str,
    history: str,
    as_json: bool = False,
    patient_ref_pattern_option: str | None = None,
) -> int:
    try:
        pattern = patient_ref_pattern(patient_ref_pattern_option)
        report = compare(Path(old_dir), Path(new_dir), Path(history), pattern)
    except CompareError as exc:
        print(f"therapy-compliance compare-rulesets: {exc}", file=sys.stderr)
        return 2
    invalid = report.pop("invalid")  # on stderr, as audit reports them; counted in the report
    assert isinstance(invalid, list)
    for item in invalid:  # as audit reports them
        sys.stderr.write(orjson.dumps(item).decode() + "\n")
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _table(report, sys.stdout)
    return 1 if report["invalid_lines"] else 0
