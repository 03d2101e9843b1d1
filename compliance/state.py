"""Per-patient history for the rules that span visits (pure; no I/O).

The stream worker keeps each patient's history in a table co-partitioned with the input topic,
one key per visit plus a per-patient head (compliance/state_layout.py); `audit` keeps
`PatientHistory` objects in a dict. Semantics
(EVENTS.md "v1 additions": re-delivery changes nothing, a corrected event replaces the earlier
one, a late visit is judged at its own date):

- Each evaluation has a sequence number `seq` (the record's offset in its partition; the line
  number in audit). A visit is judged against the entries with `seq' < seq` only, excluding its
  own visit_id (and, for the episode and KX rules, with dates of service up to its own), so
  replaying an event after a crash - when the restored state may already hold later events -
  gives the same findings and alert ids as the first time.
- `apply` upserts by visit_id. A corrected event (higher seq) becomes the visit's current
  version; the earlier version is kept only for judging events whose seq lies between the two
  (replay), never for later ones. Applying an event whose seq is not above the stored one is a
  no-op, so re-delivery and double application change nothing.
- Bounded (compliance/retention.py): relative to the newest date of service N, a record keeps
  its same-day part (NPI, billed lines) while its date is within `horizon_days` of N, and its
  episode part (compact: flags, episode documents, KX amounts) within `episode_horizon_days`;
  older records are dropped after folding their KX amounts into per-year totals, except the few
  an open, active episode still needs. A visit keeps at most `MAX_VERSIONS` versions. Exact
  replay holds for events within the horizons of the patient's newest date of service and with
  fewer corrections than that in the replay window.

Serialised forms: compliance/state_layout.py (format 3, what the worker writes);
compliance/state_codec.py (format 2, one value per patient: read and upgraded, and format 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from compliance.episodes.accrual import KxFold
from compliance.records import LineRecord, VisitRecord
from compliance.retention import (
    DEFAULT_EPISODE_HORIZON_DAYS,
    DEFAULT_HORIZON_DAYS,
    MAX_VERSIONS,
    prune,
)
from compliance.state_codec import FORMAT_VERSION, JsonCache, StateFormatError, decode, encode

#: Notice ids remembered per patient (PatientHistory.sent).
SENT_NOTICES = 128


@dataclass(frozen=True, slots=True)
class PatientHistory:
    """Visits of one patient by visit_id; each visit's versions ordered by seq (oldest first);
    KX totals folded from visits past the episode horizon, and the newest date folded."""

    visits: tuple[tuple[VisitRecord, ...], ...] = ()
    kx_folds: tuple[KxFold, ...] = ()
    folded_through: date | None = None
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    #: JSON objects of the records (read by from_bytes or built by to_bytes), reused by
    #: to_bytes (state_codec.JsonCache).
    _json: JsonCache = field(default_factory=dict, compare=False, repr=False)
    #: Kept with the history instead of a scan per visit: the newest date of service and the
    #: highest seq of the visits' current (last) versions.
    _newest: date | None = field(default=None, init=False, compare=False, repr=False)
    _max_seq: int = field(default=-1, init=False, compare=False, repr=False)
    #: Ids of the notices published for the patient (compliance/notices.py), newest last, at
    #: most `SENT_NOTICES`: a notice is not published again while its id is here.
    sent: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        index = self._index
        newest: date | None = None
        max_seq = -1
        for i, versions in enumerate(self.visits):
            index[versions[0].visit_id] = i
            current = versions[-1]
            if newest is None or current.date_of_service > newest:
                newest = current.date_of_service
            if current.seq > max_seq:
                max_seq = current.seq
        object.__setattr__(self, "_newest", newest)
        object.__setattr__(self, "_max_seq", max_seq)

    def __len__(self) -> int:
        return len(self.visits)

    @property
    def newest(self) -> date | None:
        """The newest date of service among the visits' current versions."""
        return self._newest

    @property
    def max_seq(self) -> int:
        """The highest seq among the visits' current versions (-1: none)."""
        return self._max_seq

    def versions(self, visit_id: str) -> tuple[VisitRecord, ...]:
        i = self._index.get(visit_id)
        return () if i is None else self.visits[i]

    def seen_before(self, seq: int, exclude_visit: str) -> Iterator[VisitRecord]:
        """Each other visit as it stood before `seq`: its latest version with seq' < seq."""
        if seq > self._max_seq:  # the usual case, a new event: every current version
            for versions in self.visits:
                if versions[0].visit_id != exclude_visit:
                    yield versions[-1]
            return
        for versions in self.visits:
            if versions[0].visit_id == exclude_visit:
                continue
            chosen = None
            for v in versions:
                if v.seq < seq:
                    chosen = v
            if chosen is not None:
                yield chosen

    def same_day(
        self, day: date, seq: int, exclude_visit: str, npi: str | None = None
    ) -> list[VisitRecord]:
        """Visits of `day` seen before `seq` (and of rendering `npi` when given)."""
        return [
            v
            for v in self.seen_before(seq, exclude_visit)
            if v.date_of_service == day and (npi is None or v.npi == npi)
        ]

    def apply(
        self,
        record: VisitRecord,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        episode_horizon_days: int = DEFAULT_EPISODE_HORIZON_DAYS,
    ) -> PatientHistory:
        """The history with `record` upserted, then pruned to the horizons. Idempotent."""
        current = self.versions(record.visit_id)
        if current and current[-1].seq >= record.seq:
            return self  # re-delivery, or an older event than the one stored
        visits = list(self.visits)
        if current and current[-1].status is not None:
            # The status lives on the current version only.
            current = (*current[:-1], current[-1].with_status(None))
        kept = (*current, record)[-MAX_VERSIONS:]
        i = self._index.get(record.visit_id)
        if i is None:
            visits.append(kept)
        else:
            visits[i] = kept
        pruned, folds, through = prune(
            visits, self.kx_folds, self.folded_through, horizon_days, episode_horizon_days
        )
        pruned.sort(key=_visit_id)  # nearly sorted already: linear
        return PatientHistory(tuple(pruned), folds, through, {}, self._json, sent=self.sent)

    def with_current(self, records: dict[str, VisitRecord]) -> PatientHistory:
        """The history with these visits' current versions replaced (their status changed)."""
        if not records:
            return self
        visits = list(self.visits)
        for visit_id, record in records.items():
            i = self._index[visit_id]
            visits[i] = (*visits[i][:-1], record)
        return PatientHistory(
            tuple(visits), self.kx_folds, self.folded_through, {}, self._json, sent=self.sent
        )

    def with_sent(self, notice_ids: Iterable[str]) -> PatientHistory:
        """The history remembering these notice ids as published (the oldest forgotten past
        `SENT_NOTICES`; a forgotten one still due is published again, with the same id)."""
        added = tuple(i for i in notice_ids if i not in self.sent)
        if not added:
            return self
        sent = (*self.sent, *added)[-SENT_NOTICES:]
        return PatientHistory(
            self.visits, self.kx_folds, self.folded_through, {}, self._json, sent=sent
        )

    # --- serialisation -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Deterministic: visits sorted by visit_id, versions by seq, object keys sorted."""
        return encode(self.visits, self.kx_folds, self.folded_through, self._json)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PatientHistory:
        """Reads format 2 and upgrades format 1 (its same-day records are kept as they were)."""
        visits, folds, through, cache = decode(raw)
        return cls(visits, folds, through, {}, cache)


def _visit_id(versions: tuple[VisitRecord, ...]) -> str:
    return versions[0].visit_id


def history_of(
    records: Iterable[VisitRecord],
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    episode_horizon_days: int = DEFAULT_EPISODE_HORIZON_DAYS,
) -> PatientHistory:
    """A history built by applying `records` in order (tests, tools)."""
    h = PatientHistory()
    for r in records:
        h = h.apply(r, horizon_days, episode_horizon_days)
    return h


__all__ = [
    "DEFAULT_EPISODE_HORIZON_DAYS",
    "DEFAULT_HORIZON_DAYS",
    "FORMAT_VERSION",
    "MAX_VERSIONS",
    "SENT_NOTICES",
    "LineRecord",
    "PatientHistory",
    "StateFormatError",
    "VisitRecord",
    "history_of",
]
