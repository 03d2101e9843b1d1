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

    @property
    def delayed_certification(self) -> bool:
        """A signed certification with the reason for its delay documented (Pub. 100-02, Ch.
        15, sec. 220.1.3 D): it covers the earlier visits of its interval (EVENTS.md)."""
        return self.kind is DocKind.CERTIFICATION and self.delay_reason and self.signed is not None


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


class PayerRecord(_Record):
    """The event's payer as the payer policy resolves it (compliance/policy.py)."""

    payer_id: str
    kind: str  # schemas.common.PayerKind value
    unit_rule: str | None = None  # schemas.common.UnitRule value


class OpenAlert(_Record):
    """An alert open in a visit's current status (EVENTS.md "VisitStatus v1")."""

    alert_id: str
    rule_id: str
    severity: str  # effective severity (after payer policy)
    line_ids: tuple[str, ...] = ()
    amount_at_risk: str | None = None  # decimal string, USD
    #: The scope of the rule family that raised it (compliance/rules Scope): what can change it.
    scope: str = "own"


class StatusState(_Record):
    """What the visit status needs between events, kept on a visit's current version only."""

    #: The version of the last status published for the visit (1 = its first).
    version: int
    open: tuple[OpenAlert, ...] = ()
    #: Event ids of the visit's earlier events no longer among its kept versions (newest last,
    #: at most `SEEN_EVENT_IDS`): an event carrying one of them is a re-delivery.
    seen: tuple[str, ...] = ()


#: Event ids remembered per visit beyond its kept versions (bounded state per visit).
SEEN_EVENT_IDS = 8


class VisitRecord(_Record):
    """One version of a visit. `npi` and `lines` are the same-day part ("" and () once dropped);
    `episode` is None for records without episode data (upgraded from format 1, or built
    without a rule set): the episode and KX rules do not read them.

    The trailing fields serve the visit status and re-judgement (EVENTS.md "VisitStatus v1"):
    the event id, the payer, the units-0 lines (which the same-day part leaves out), the seq of
    the visit's first event (its place among the patient's visits of a date: `first`) and the
    visit's status. Records read from before them (empty event id) are never re-judged; their
    first status comes with their next event."""

    visit_id: str
    seq: int
    date_of_service: date
    npi: str
    discipline: str
    lines: tuple[LineRecord, ...] = ()
    episode: EpisodePart | None = None
    event_id: str = ""
    payer: PayerRecord | None = None
    unbilled: tuple[LineRecord, ...] = ()
    #: The seq of the visit's first event (-1: not recorded, read from before this field).
    first_seq: int = -1
    status: StatusState | None = None
    #: The event's `parts_missing` (EHR join): the documentation rules are left out without
    #: the documentation (rules/feed_parts.py), also when the visit is judged again.
    parts_missing: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        visit: TherapyVisitCompleted,
        seq: int,
        episode: EpisodePart | None = None,
        first_seq: int = -1,
    ) -> VisitRecord:
        billed: list[LineRecord] = []
        unbilled: list[LineRecord] = []
        for s in visit.services:
            line = LineRecord(s.line_id, s.cpt, s.units, tuple(s.modifiers), s.allowed_amount)
            (billed if s.units > 0 else unbilled).append(line)
        payer = visit.payer
        return cls(
            visit.visit_id,
            seq,
            visit.date_of_service,
            visit.rendering_provider.npi,
            visit.discipline.value,
            tuple(billed),
            episode,
            visit.event_id,
            PayerRecord(
                payer.payer_id,
                payer.kind.value,
                payer.unit_rule.value if payer.unit_rule is not None else None,
            ),
            tuple(unbilled),
            first_seq if first_seq >= 0 else seq,
            None,
            tuple(visit.parts_missing or ()),
        )

    @property
    def first(self) -> int:
        """The visit's place among the patient's visits of one date: the seq of its first event
        (a correction keeps its visit's place)."""
        return self.first_seq if self.first_seq >= 0 else self.seq

    @property
    def judgeable(self) -> bool:
        """Whether the record holds what re-judging its visit needs (the same-day part, the
        event id and the payer): within `horizon_days`, and written by this version."""
        return bool(self.npi) and bool(self.event_id) and self.payer is not None

    def stripped(self) -> VisitRecord:
        """Without the same-day part (kept past `horizon_days` for the episode rules only)."""
        if not self.npi and not self.lines and not self.unbilled:
            return self
        return msgspec.structs.replace(self, npi="", lines=(), unbilled=())

    def with_status(self, status: StatusState | None) -> VisitRecord:
        return msgspec.structs.replace(self, status=status)


__all__ = [
    "INITIAL_EVALUATION",
    "RE_EVALUATION",
    "SEEN_EVENT_IDS",
    "SERVICE",
    "DocKind",
    "DocRecord",
    "EpisodePart",
    "KxEntry",
    "LineRecord",
    "OpenAlert",
    "PayerRecord",
    "Role",
    "StatusState",
    "VisitRecord",
]
