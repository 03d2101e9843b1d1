"""therapy-compliance domain core: CPT catalog, payer unit rules, NCCI/MUE edits, rules and
findings, the per-patient history the claim-level rules need. No I/O beyond reading rule data."""

from compliance.engine import ENGINE_VERSION, Engine, EpisodeStatus, Outcome
from compliance.findings import Finding, RuleId
from compliance.ruleset import RuleSet, load_ruleset
from compliance.state import PatientHistory, VisitRecord

__all__ = [
    "ENGINE_VERSION",
    "Engine",
    "EpisodeStatus",
    "Finding",
    "Outcome",
    "PatientHistory",
    "RuleId",
    "RuleSet",
    "VisitRecord",
    "load_ruleset",
]
