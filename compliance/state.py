"""Per-patient history for the claim-level rules that span visits (pure; no I/O).

The stream worker keeps one `PatientHistory` per patient as the value of a table keyed by
`patient_ref` (co-partitioned with the input topic); `audit` keeps them in a dict. Semantics
(EVENTS.md "v1 additions": re-delivery changes nothing, a corrected event replaces the earlier
one, a late visit is judged at its own date):

- Each evaluation has a sequence number `seq` (the record's offset in its partition; the line
  number in audit). A visit is judged against the entries with `seq' < seq` only, excluding its
  own visit_id, so replaying an event after a crash - when the restored state may already hold
  later events - gives the same findings and alert ids as the first time.
- `apply` upserts by visit_id. A corrected event (higher seq) becomes the visit's current
  version; the earlier version is kept only for judging events whose seq lies between the two
  (replay), never for later ones. Applying an event whose seq is not above the stored one is a
  no-op, so re-delivery and double application change nothing.
- Bounded: entries whose date of service is more than `horizon_days` before the newest date of
  service in the history are dropped on apply, and a visit keeps at most `MAX_VERSIONS`
  versions. Exact replay therefore holds for events within the horizon of the patient's newest
  date of service and with fewer corrections than that in the replay window.

Open for extension: the serialised form is a versioned JSON object whose top level and whose
per-visit records are objects with short keys; episode state (treatment days, reports, plan
and certification intervals, KX accrual) can be added as new keys in a later format version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from schemas.visit import TherapyVisitCompleted

FORMAT_VERSION = 1
#: Versions kept per visit (current + earlier ones still needed by a replay).
MAX_VERSIONS = 3
DEFAULT_HORIZON_DAYS = 90


class StateFormatError(ValueError):
    """Serialised history of an unknown format version or shape."""


@dataclass(frozen=True, slots=True)
class LineRecord:
    """A billed line (units > 0) as the same-day rules need it."""

    line_id: str
    cpt: str
    units: int
    modifiers: tuple[str, ...] = ()
    #: The payer's allowed amount for the line (decimal string), when the event had one.
    allowed_amount: str | None = None


@dataclass(frozen=True, slots=True)
class VisitRecord:
    """One version of a visit: what later visits of the same day are checked against."""

    visit_id: str
    seq: int
    date_of_service: date
    npi: str
    discipline: str
    lines: tuple[LineRecord, ...] = ()

    @classmethod
    def of(cls, visit: TherapyVisitCompleted, seq: int) -> VisitRecord:
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
        )


@dataclass(frozen=True, slots=True)
class PatientHistory:
    """Visits of one patient by visit_id; each visit's versions ordered by seq (oldest first)."""

    visits: tuple[tuple[VisitRecord, ...], ...] = ()
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({versions[0].visit_id: i for i, versions in enumerate(self.visits)})

    def __len__(self) -> int:
        return len(self.visits)

    def versions(self, visit_id: str) -> tuple[VisitRecord, ...]:
        i = self._index.get(visit_id)
        return () if i is None else self.visits[i]

    def seen_before(self, seq: int, exclude_visit: str) -> Iterator[VisitRecord]:
        """Each other visit as it stood before `seq`: its latest version with seq' < seq."""
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
        self, record: VisitRecord, horizon_days: int = DEFAULT_HORIZON_DAYS
    ) -> PatientHistory:
        """The history with `record` upserted, then pruned to the horizon. Idempotent."""
        current = self.versions(record.visit_id)
        if current and current[-1].seq >= record.seq:
            return self  # re-delivery, or an older event than the one stored
        visits = list(self.visits)
        kept = (*current, record)[-MAX_VERSIONS:]
        i = self._index.get(record.visit_id)
        if i is None:
            visits.append(kept)
        else:
            visits[i] = kept
        return _pruned(visits, horizon_days)

    # --- serialisation -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Deterministic: visits sorted by visit_id, versions by seq, object keys sorted."""
        body = {
            "format": FORMAT_VERSION,
            "visits": [
                [_record_json(v) for v in versions]
                for versions in sorted(self.visits, key=lambda vs: vs[0].visit_id)
            ],
        }
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PatientHistory:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise StateFormatError(f"patient history is not JSON: {exc}") from exc
        if not isinstance(body, dict) or "format" not in body:
            raise StateFormatError("patient history has no format version")
        if body["format"] != FORMAT_VERSION:
            raise StateFormatError(
                f"patient history format {body['format']!r} is not supported "
                f"(this engine reads format {FORMAT_VERSION})"
            )
        try:
            visits = tuple(tuple(_record_of(v) for v in versions) for versions in body["visits"])
            if any(not versions for versions in visits):
                raise ValueError("a visit without versions")
            return cls(visits)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise StateFormatError(f"patient history format {FORMAT_VERSION}: bad record") from exc


def _pruned(visits: Sequence[tuple[VisitRecord, ...]], horizon_days: int) -> PatientHistory:
    newest = max(vs[-1].date_of_service for vs in visits)
    oldest_kept = newest - timedelta(days=horizon_days)
    kept = [vs for vs in visits if vs[-1].date_of_service >= oldest_kept]
    return PatientHistory(tuple(sorted(kept, key=lambda vs: vs[0].visit_id)))


def _record_json(v: VisitRecord) -> dict[str, Any]:
    return {
        "id": v.visit_id,
        "s": v.seq,
        "d": v.date_of_service.isoformat(),
        "n": v.npi,
        "p": v.discipline,
        "l": [_line_json(ln) for ln in v.lines],
    }


def _line_json(ln: LineRecord) -> list[Any]:
    out: list[Any] = [ln.line_id, ln.cpt, ln.units, list(ln.modifiers)]
    if ln.allowed_amount is not None:
        out.append(ln.allowed_amount)
    return out


def _record_of(obj: dict[str, Any]) -> VisitRecord:
    lines = tuple(
        LineRecord(str(x[0]), str(x[1]), int(x[2]), tuple(x[3]), str(x[4]) if len(x) > 4 else None)
        for x in obj["l"]
    )
    return VisitRecord(
        str(obj["id"]),
        int(obj["s"]),
        date.fromisoformat(obj["d"]),
        str(obj["n"]),
        str(obj["p"]),
        lines,
    )


def history_of(
    records: Iterable[VisitRecord], horizon_days: int = DEFAULT_HORIZON_DAYS
) -> PatientHistory:
    """A history built by applying `records` in order (tests, tools)."""
    h = PatientHistory()
    for r in records:
        h = h.apply(r, horizon_days)
    return h


__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "FORMAT_VERSION",
    "MAX_VERSIONS",
    "LineRecord",
    "PatientHistory",
    "StateFormatError",
    "VisitRecord",
    "history_of",
]
