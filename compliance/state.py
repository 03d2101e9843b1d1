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

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

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
    #: Each visit's versions by visit_id.
    _index: dict[str, tuple[VisitRecord, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: JSON objects of the records (read by from_bytes or built by to_bytes), reused by
    #: to_bytes (state_codec.JsonCache).
    _json: JsonCache = field(default_factory=dict, compare=False, repr=False)
    #: Kept with the history instead of a scan per visit: the newest date of service and the
    #: highest seq of the visits' current (last) versions.
    _newest: date | None = field(default=None, init=False, compare=False, repr=False)
    _max_seq: int = field(default=-1, init=False, compare=False, repr=False)
    #: Lower bounds kept for `apply` to know, without running `prune`, that pruning would
    #: change nothing (retention.py): the oldest date of a version that pruning would strip or
    #: drop once past the same-day horizon (`_prunable`), and of a current version with an
    #: episode part (None: none).
    _oldest_lines: date | None = field(default=None, init=False, compare=False, repr=False)
    _oldest_episode: date | None = field(default=None, init=False, compare=False, repr=False)
    #: The visits are in strictly increasing visit_id order (every history `apply` and the
    #: worker's reads build; a format 1 history read by `from_bytes` need not be).
    _ordered: bool = field(default=True, init=False, compare=False, repr=False)
    #: Ids of the notices published for the patient (compliance/notices.py), newest last, at
    #: most `SENT_NOTICES`: a notice is not published again while its id is here.
    sent: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        index = self._index
        newest = oldest_lines = oldest_episode = None
        max_seq = -1
        previous = ""
        ordered = True
        for versions in self.visits:
            visit_id = versions[0].visit_id
            index[visit_id] = versions
            ordered = ordered and visit_id > previous
            previous = visit_id
            current = versions[-1]
            day = current.date_of_service
            if newest is None or day > newest:
                newest = day
            if current.seq > max_seq:
                max_seq = current.seq
            if current.episode is not None and (oldest_episode is None or day < oldest_episode):
                oldest_episode = day
            if len(versions) == 1:  # the usual visit: _prunable inlined
                if (current.lines or current.episode is None) and (
                    oldest_lines is None or day < oldest_lines
                ):
                    oldest_lines = day
            else:
                own = _prunable(versions)
                if own is not None and (oldest_lines is None or own < oldest_lines):
                    oldest_lines = own
        _set(self, "_newest", newest)
        _set(self, "_max_seq", max_seq)
        _set(self, "_oldest_lines", oldest_lines)
        _set(self, "_oldest_episode", oldest_episode)
        _set(self, "_ordered", ordered)

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
        return self._index.get(visit_id, ())

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
        quick = self._unpruned(visits, kept, bool(current), horizon_days, episode_horizon_days)
        if quick is not None:
            return quick
        if current:
            visits[self._position(record.visit_id)] = kept
        else:
            visits.append(kept)
        pruned, folds, through = prune(
            visits, self.kx_folds, self.folded_through, horizon_days, episode_horizon_days
        )
        pruned.sort(key=_visit_id)  # nearly sorted already: linear
        return PatientHistory(tuple(pruned), folds, through, {}, self._json, sent=self.sent)

    def _unpruned(
        self,
        visits: list[tuple[VisitRecord, ...]],
        kept: tuple[VisitRecord, ...],
        stored: bool,
        horizon_days: int,
        episode_horizon_days: int,
    ) -> PatientHistory | None:
        """`apply`'s result when pruning would change nothing (most visits: 72-95% of the
        synthetic feeds', more the longer the feed), built from this history's indexes without
        a scan; None otherwise. Pruning changes nothing when no version that it would strip or
        drop past the same-day horizon (`_prunable`) is older than that horizon, no current
        version with an episode part is older than the episode horizon, and no folded KX year
        is too old to keep, all relative to the newest date after the visit (retention.prune,
        which the full path runs)."""
        if not self._ordered:
            return None
        record = kept[-1]
        day = record.date_of_service
        newest = self._newest
        at = bisect_left(visits, record.visit_id, key=_visit_id)
        if stored:
            old = visits[at][-1].date_of_service
            if newest is not None and day < old and old >= newest:
                return None  # the newest visit moved back: the newest date needs a scan
        if newest is None or day > newest:
            newest = day
        line_cut = newest - timedelta(days=horizon_days)
        episode_cut = newest - timedelta(days=max(horizon_days, episode_horizon_days))
        oldest_lines = self._oldest_lines
        own = _prunable(kept)
        if own is not None and (oldest_lines is None or own < oldest_lines):
            oldest_lines = own
        oldest_episode = self._oldest_episode
        if record.episode is not None and (oldest_episode is None or day < oldest_episode):
            oldest_episode = day
        if (oldest_lines is not None and oldest_lines < line_cut) or (
            oldest_episode is not None and oldest_episode < episode_cut
        ):
            return None
        folds = self.kx_folds
        first_year = newest.year - 1
        for j, f in enumerate(folds):
            if f.year < first_year or (
                j and (folds[j - 1].year, folds[j - 1].bucket) >= (f.year, f.bucket)
            ):
                return None  # a year to drop, or folds not as prune leaves them
        if stored:
            visits[at] = kept
        else:
            visits.insert(at, kept)
        return self._derived(
            visits,
            {**self._index, record.visit_id: kept},
            newest=newest,
            max_seq=max(self._max_seq, record.seq),
            oldest_lines=oldest_lines,
            oldest_episode=oldest_episode,
        )

    def _derived(
        self,
        visits: list[tuple[VisitRecord, ...]],
        index: dict[str, tuple[VisitRecord, ...]],
        *,
        newest: date | None,
        max_seq: int,
        oldest_lines: date | None,
        oldest_episode: date | None,
    ) -> PatientHistory:
        """A history of these visits (in visit_id order) and the folds of this one, with its
        indexes given instead of found by `__post_init__`'s scan."""
        h = PatientHistory.__new__(PatientHistory)
        _set(h, "visits", tuple(visits))
        _set(h, "kx_folds", self.kx_folds)
        _set(h, "folded_through", self.folded_through)
        _set(h, "_index", index)
        _set(h, "_json", self._json)
        _set(h, "_newest", newest)
        _set(h, "_max_seq", max_seq)
        _set(h, "_oldest_lines", oldest_lines)
        _set(h, "_oldest_episode", oldest_episode)
        _set(h, "_ordered", True)
        _set(h, "sent", self.sent)
        return h

    def _position(self, visit_id: str) -> int:
        """The index in `visits` of a stored visit (the last of its entries in a history
        built with the id twice, as `versions` answers)."""
        if self._ordered:
            return bisect_left(self.visits, visit_id, key=_visit_id)
        last = len(self.visits) - 1
        return next(
            last - i for i, vs in enumerate(reversed(self.visits)) if vs[0].visit_id == visit_id
        )

    def with_current(self, records: dict[str, VisitRecord]) -> PatientHistory:
        """The history with these visits' current versions replaced (their status changed)."""
        if not records:
            return self
        visits = list(self.visits)
        for visit_id, record in records.items():
            i = self._position(visit_id)
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


def _prunable(versions: tuple[VisitRecord, ...]) -> date | None:
    """The oldest date among a visit's versions that retention.prune changes once it is past
    the same-day horizon (None: none): a current version without an episode part (dropped);
    a visit's only version with billed lines; any of several versions with a same-day part
    (stripped)."""
    current = versions[-1]
    if len(versions) == 1:
        return current.date_of_service if current.lines or current.episode is None else None
    days = [
        v.date_of_service
        for v in versions
        if v.npi or v.lines or v.unbilled or (v is current and v.episode is None)
    ]
    return min(days) if days else None


def _visit_id(versions: tuple[VisitRecord, ...]) -> str:
    return versions[0].visit_id


_set = object.__setattr__


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
