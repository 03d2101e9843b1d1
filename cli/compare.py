"""`therapy-compliance compare-rulesets OLD_DIR NEW_DIR HISTORY.jsonl [--json]`: a dry run of a
rule-data update (e.g. a quarterly NCCI file) over a history of visits.

Audits the history twice, with the old and with the new rule set, exactly as `audit` does
(per-patient state across lines, seq = line number), and prints per rule the alerts the update
would add and remove. Alerts are matched by alert id (event, rule, line set), so a changed
message or amount alone is neither added nor removed. Output: a table, or one JSON object with
`--json`. Exit 0; 2 when a rule set or the history cannot be read.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

import orjson

from cli.audit import run_audit
from compliance import Engine
from compliance.ruleset import load_ruleset


def _alerts(engine: Engine, history: Path) -> dict[str, dict[str, object]]:
    out = io.BytesIO()
    with history.open("rb") as stream:
        run_audit(stream, out, io.StringIO(), engine=engine)
    alerts = {}
    for raw in out.getvalue().splitlines():
        alert = orjson.loads(raw)
        alerts[alert["alert_id"]] = alert
    return alerts


def compare(old_dir: Path, new_dir: Path, history: Path) -> dict[str, object]:
    old_engine = Engine(ruleset=load_ruleset(old_dir))
    new_engine = Engine(ruleset=load_ruleset(new_dir))
    old = _alerts(old_engine, history)
    new = _alerts(new_engine, history)
    added = [new[k] for k in sorted(new.keys() - old.keys())]
    removed = [old[k] for k in sorted(old.keys() - new.keys())]
    added_by = Counter(str(a["rule_id"]) for a in added)
    removed_by = Counter(str(a["rule_id"]) for a in removed)
    rules = sorted(added_by.keys() | removed_by.keys())
    return {
        "old_ruleset": old_engine.ruleset_version,
        "new_ruleset": new_engine.ruleset_version,
        "alerts_old": len(old),
        "alerts_new": len(new),
        "by_rule": {r: {"added": added_by[r], "removed": removed_by[r]} for r in rules},
        "added": [_brief(a) for a in added],
        "removed": [_brief(a) for a in removed],
    }


def _brief(alert: dict[str, object]) -> dict[str, object]:
    keys = ("rule_id", "alert_id", "visit_id", "date_of_service", "cpt", "line_ids", "message")
    return {k: alert.get(k) for k in keys}


def _table(report: dict[str, object], out: TextIO) -> None:
    out.write(f"old rule set {report['old_ruleset']}: {report['alerts_old']} alerts\n")
    out.write(f"new rule set {report['new_ruleset']}: {report['alerts_new']} alerts\n")
    by_rule = report["by_rule"]
    assert isinstance(by_rule, dict)
    if not by_rule:
        out.write("no alert added or removed\n")
        return
    width = max(len("rule_id"), *(len(r) for r in by_rule))
    out.write(f"{'rule_id':<{width}}  {'added':>7}  {'removed':>7}\n")
    for rule, counts in by_rule.items():
        out.write(f"{rule:<{width}}  {counts['added']:>7}  {counts['removed']:>7}\n")


def compare_main(old_dir: str, new_dir: str, history: str, as_json: bool = False) -> int:
    try:
        report = compare(Path(old_dir), Path(new_dir), Path(history))
    except OSError as exc:
        print(f"therapy-compliance compare-rulesets: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a rule set file is invalid; the message names it
        print(f"therapy-compliance compare-rulesets: {exc}", file=sys.stderr)
        return 2
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _table(report, sys.stdout)
    return 0
