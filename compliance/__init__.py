"""therapy-compliance domain core: CPT catalog, payer unit rules, rules and findings. No I/O."""

from compliance.engine import ENGINE_VERSION, Engine, Outcome
from compliance.findings import Finding, RuleId

__all__ = ["ENGINE_VERSION", "Engine", "Finding", "Outcome", "RuleId"]
