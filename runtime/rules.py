"""The rule set a program runs with, from its settings: the one loader path of the worker
(streams/app.py) and `audit` (cli/audit.py), so the same environment gives both the same rules
(the same `ruleset_version`, the same alerts). TC_RULESET_DIR names the directory (audit's
`--ruleset` replaces it), TC_NCCI_PTP_FILES, TC_NCCI_MUE_FILES and TC_FEE_FILES add files."""

from __future__ import annotations

from pathlib import Path

from compliance.ruleset import RuleSet, load_ruleset
from runtime.settings import RuleFilesSection


def load_rules(files: RuleFilesSection, directory: Path | None = None) -> RuleSet:
    """The rule set `files` names; `directory`, when given, instead of its TC_RULESET_DIR.
    RuleSetError / NcciFileError / FeeScheduleError (ValueError) name the file at fault."""
    chosen = directory if directory is not None else files.ruleset_dir
    return load_ruleset(chosen, **files.ruleset_files)
