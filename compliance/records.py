"""Compact per-visit records kept in a patient's history (pure data; compliance/state.py holds
them, compliance/state_layout.py and state_codec.py serialise them).

A `VisitRecord` is one version of a visit: the same-day part (rendering NPI and billed lines,
for the claim-level rules of the same date of service; dropped after `horizon_days`) and the
episode part (`EpisodePart`: what the episode-of-care and KX rules need, kept for
`episode_horizon_days`). Records hold facts as the rule set in force judged them when the visit
was seen (amounts, who counts as a clinician): a rule-data update applies to visits seen after
it.

Records are never mutated once built (the history shares them between versions of itself).
They are msgspec Structs (`_Record`): serialised as arrays by field order (compliance/state_layout.py
decodes straight into them, in C), and not tracked by Python's garbage collector (`gc=False`:
they hold no reference cycles, only strings, numbers, dates, enums, tuples and other records),
so thousands of live records cost the collector nothing. Not frozen: building a frozen record
costs more, and nothing changes one after it is built.

Fields are appended, never reordered or removed: a stored record is an array by position, and
a record read with fewer elements takes the defaults of the missing trailing fields.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

import msgspec

from schemas.visit import TherapyVisitCompleted

#: EpisodePart.flags bits.
SERVICE = 1  # the visit has at least one service line: its date is a treatment day
INITIAL_EVALUATION = 2  # an initial evaluation code of the visit's discipline: opens an episode
RE_EVALUATION = 4  # a re-evaluation by a clinician: restarts the progress-report period


class _Record(msgspec.Struct, array_like=True, gc=False):
    """Base of the records: array-encoded (every field, by position), untracked by the GC."""


class DocKind(StrEnum):
    """Document kinds the episode rules read, with their short codes in the serialised form."""

    PROGRESS_REPORT = "pr"
    RE_EVALUATION = "re"
    DISCHARGE_SUMMARY = "ds"
    PLAN_OF_CARE = "pc"
    CERTIFICATION = "ce"
    REFERRAL = "rf"


class Role(StrEnum):
    """Who wrote a report, by the rule set's credential classes (episode_policy.toml)."""

    CLINICIAN = "c"
    ASSISTANT = "a"
    OTHER = "o"


class DocRecord(_Record):
    kind: DocKind
    #: The date the document refers to: `document_date`, else the visit's date of service (a
    #: document dated after its visit is taken as dated on the visit: it exists from then on).
    day: date
    #: `signed_at`'s calendar date as the EHR wrote it (its own UTC offset); None = unsigned.
    signed: date | None = None
    credential: str | None = None
    role: Role = Role.OTHER
    plan_start: date | None = None
    plan_end: date | None = None
    sent: date | None = None
    verbal: date | None = None
    covers_from: date | None = None
    covers_through: date | None = None
    delay_reason: bool = False
    discipline: str | None = None


class KxEntry(_Record):
    """A visit's contribution to one KX bucket (Medicare Part B visits only)."""

    bucket: str  # KxBucket value: PT_SLP or OT
    cents: int  # known amounts of its therapy lines, in cents
    unknown: tuple[str, ...] = ()  # therapy line ids whose amount is unknown
    lines: int = 0  # billed therapy lines
    with_kx: int = 0  # of them, lines carrying KX


class EpisodePart(_Record):
    flags: int
    episode_ref: str | None = None
    start: date | None = None  # the event's episode_start_date
    docs: tuple[DocRecord, ...] = ()
    kx: tuple[KxEntry, ...] = ()

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def discharged(self) -> bool:
        return any(d.kind is DocKind.DISCHARGE_SUMMARY for d in self.docs)


class LineRecord(_Record):
    """A billed line (units > 0) as the same-day rules need it."""

    line_id: str
    cpt: str
    units: int
    modifiers: tuple[str, ...] = ()
    #: The payer's allowed amount for the line (decimal string), when the event had one.
    allowed_amount: str | None = None


class VisitRecord(_Record):
    """One version of a visit. `npi` and `lines` are the same-day part ("" and () once dropped);
    `episode` is None for records without episode data (upgraded from format 1, or built
    without a rule set): the episode and KX rules do not read them."""

    visit_id: str
    seq: int
    date_of_service: date
    npi: str
    discipline: str
    lines: tuple[LineRecord, ...] = ()
    episode: EpisodePart | None = None

    @classmethod
    def of(
        cls, visit: TherapyVisitCompleted, seq: int, episode: EpisodePart | None = None
    ) -> VisitRecord:
        return cls(
            visit.visit_id,
            seq,
            visit.date_of_service,
            visit.rendering_provider.npi,
            visit.discipline.value,
            tuple(
                LineRecord(s.line_id, s.cpt, s.units, tuple(s.modifiers), s.allowed_amount)
                for s in visit.services
                if s.units > 0
            ),
            episode,
        )

    def stripped(self) -> VisitRecord:
        """Without the same-day part (kept past `horizon_days` for the episode rules only)."""
        if not self.npi and not self.lines:
            return self
        return VisitRecord(
            self.visit_id, self.seq, self.date_of_service, "", self.discipline, (), self.episode
        )


__all__ = [
    "INITIAL_EVALUATION",
    "RE_EVALUATION",
    "SERVICE",
    "DocKind",
    "DocRecord",
    "EpisodePart",
    "KxEntry",
    "LineRecord",
    "Role",
    "VisitRecord",
]
