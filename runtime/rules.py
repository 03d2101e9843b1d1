"""The rule set a program runs with, from its settings: the one loader path of the worker
(streams/app.py) and `audit` (cli/audit.py), so the same environment gives both the same rules
(the same `ruleset_version`, the same alerts). TC_RULESET_DIR names the directory (audit's
`--ruleset` replaces it), TC_NCCI_PTP_FILES, TC_NCCI_MUE_FILES and TC_FEE_FILES add files."""

from __future__ import annotations

from pathlib import Path

from compliance.ruleset import RuleSet, load_ruleset
from runtime.settings import RuleFilesSection

#: The variables that add files, by load_ruleset's argument.
_VARIABLES = {
    "ptp_files": "TC_NCCI_PTP_FILES",
    "mue_files": "TC_NCCI_MUE_FILES",
    "fee_files": "TC_FEE_FILES",
}


class RuleLoadError(ValueError):
    """A rule set that does not load, said with where its faulty file came from."""


def load_rules(files: RuleFilesSection, directory: Path | None = None) -> RuleSet:
    """The rule set `files` names; `directory`, when given, instead of its TC_RULESET_DIR.
    Raises RuleLoadError naming the file at fault and where it came from: a variable's entry
    (its path as given) or the rule set directory (the loaders' errors name files by name)."""
    chosen = directory if directory is not None else files.ruleset_dir
    try:
        return load_ruleset(chosen, **files.ruleset_files)
    except ValueError as exc:
        raise RuleLoadError(_located(str(exc), files, chosen)) from exc


def _located(message: str, files: RuleFilesSection, chosen: Path | None) -> str:
    for argument, paths in files.ruleset_files.items():
        for path in paths:
            if message.startswith(Path(path).name):
                return f"{_VARIABLES[argument]} entry {path}: {message}"
    where = chosen if chosen is not None else "(the package's)"
    return f"rule set {where}: {message}"
