"""Episodes of care (EVENTS.md "v1 additions"): episode identity, the per-episode view the rules
read, certification facts, KX accrual, and the judgement of one visit. Pure; computed per
evaluation from the compact records in compliance/records.py."""
