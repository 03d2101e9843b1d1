"""Pseudonymous references: a keyed hash of the patient identifier, never the identifier itself.

HMAC-SHA256 (RFC 2104) with a configured key, so a reference cannot be recomputed from a guessed
MRN without the key, and the same patient gets the same reference on every feed.
"""

from __future__ import annotations

import hashlib
import hmac

#: 20 hex digits = 80 bits: collisions stay negligible far beyond any clinic's patient count.
_HEX_DIGITS = 20


def keyed_ref(key: bytes, prefix: str, *parts: str) -> str:
    """prefix + truncated HMAC-SHA256 of the parts (joined by a separator that cannot occur in
    them after stripping: the unit separator)."""
    message = "\x1f".join(p.strip() for p in parts).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return prefix + digest[:_HEX_DIGITS]


def patient_ref(key: bytes, identifier: str, authority: str) -> str:
    """`P-` + keyed hash of (identifier, assigning authority): HL7 PID-3 CX.1 + CX.4, FHIR
    Patient.identifier value + system (or its configured HL7 alias)."""
    return keyed_ref(key, "P-", identifier, authority)


def hashed_visit_number(key: bytes, facility: str, visit_number: str) -> str:
    return keyed_ref(key, "V-", facility, visit_number)
