"""Format 3: a patient's history in the table as one key per visit plus a per-patient head.

Format 2 (compliance/state_codec.py) kept the whole history as the value of the patient's key,
so every visit re-encoded and rewrote - and sent to the changelog - 5-20 KB. Format 3 writes
what a visit changed:

    patient_ref                  the head: KX totals folded past the horizon, the newest date
                                 folded, the visits folded whose records may still be stored
    patient_ref + 0x1F + visit   the visit's versions (compliance/records.py), ~100-300 bytes

A visit usually changes one key: its own. Pruning (compliance/retention.py) rewrites the head
and deletes the folded visits' keys. `patient_ref` and `visit_id` are printable ASCII
(schemas/common.py `OpaqueRef`), so 0x1F never occurs in either and the keys of one patient
are exactly the head and the keys starting with `patient_ref + 0x1F`.

Values start with a format byte (0x03) and are MessagePack arrays decoded straight into the
records (msgspec). A head holding a format 1 or 2 JSON history (it starts with `{`) is read as
that history, and the next write of the patient writes it in format 3 (`Stored.legacy`).

Crash consistency. A batch's changelog records can be cut anywhere by a crash, and the next
owner restores whatever reached the changelog; every input of that batch is then processed
again (its offsets were not committed), but an input of an earlier batch is not. So a state
restored from a cut batch must stay consistent with the batches before it:
- the pipeline sends a transaction's values before its deletions (streams/pipeline.py), so a
  folded visit's key is never deleted while the head holding its fold is not durable;
- the head lists the visits it folded with the seq of the version folded (`folded`); a stored
  record of such a visit with a seq not above it is ignored when the patient is read (its
  deletion was cut off) and deleted again at the patient's next write (`Stored.stale`). An
  entry stays in the head while a read still finds the key, and the newest `MAX_FOLDED`
  others stay too: a visit folded as it arrived (beyond the horizon) leaves no record, and
  the entry is what tells a re-delivery of it from a new visit (`changes`' `visit`).
Either way each KX amount is counted once: in a fold or in a live record, never both.

Compaction (the changelog topic is compacted): each key's last record is its current value, and
a deleted visit's tombstone removes it once `delete.retention.ms` has passed - a restore that
reads the topic from the start within that time still sees the tombstone, and one after it no
longer sees the key at all. docs/rules.md "State" says more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import msgspec

from compliance.episodes.accrual import KxFold
from compliance.records import VisitRecord
from compliance.state import PatientHistory
from compliance.state_codec import StateFormatError, decode

FORMAT = 3
#: The first byte of every format 3 value.
FORMAT_BYTE = b"\x03"
#: Between the patient and the visit in a visit's key.
SEP = b"\x1f"


class Head(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """The per-patient record. Fields are appended, never reordered (read by position); the
    visit status and the notices keep their per-patient state here as new trailing fields."""

    #: (year, bucket, cents, unknown lines) folded past the episode horizon.
    kx: tuple[tuple[int, str, int, int], ...] = ()
    folded_through: date | None = None
    #: (visit_id, seq) of visits folded whose records may still be in the table.
    folded: tuple[tuple[str, int], ...] = ()


_VISIT = msgspec.msgpack.Decoder(tuple[VisitRecord, ...])
_HEAD = msgspec.msgpack.Decoder(Head)
_ENCODER = msgspec.msgpack.Encoder()


def visit_key(patient: bytes, visit_id: str) -> bytes:
    return patient + SEP + visit_id.encode()


def visits_prefix(patient: bytes) -> bytes:
    return patient + SEP


@dataclass(frozen=True, slots=True)
class Stored:
    """A patient's history as read from the table, and what its next write must also do."""

    history: PatientHistory
    #: The head as stored (None: no head).
    head: Head | None = None
    #: Keys of visits the head folded that are still stored: deleted at the next write.
    stale: tuple[bytes, ...] = ()
    #: The head held a format 1/2 history: the next write writes every visit and the head.
    legacy: bool = False

    def folded_seq(self, visit_id: str) -> int:
        """The seq of the visit's version the head says was folded (-1: none)."""
        if self.head is None:
            return -1
        for folded, seq in self.head.folded:
            if folded == visit_id:
                return seq
        return -1


EMPTY = Stored(PatientHistory())


def encode_visit(versions: tuple[VisitRecord, ...]) -> bytes:
    return FORMAT_BYTE + _ENCODER.encode(versions)


def encode_head(head: Head) -> bytes:
    return FORMAT_BYTE + _ENCODER.encode(head)


def _body(raw: bytes, what: str) -> bytes:
    if raw[:1] != FORMAT_BYTE:
        raise StateFormatError(f"{what}: not format {FORMAT} (first byte {raw[:1]!r})")
    return raw[1:]


def decode_visit(raw: bytes) -> tuple[VisitRecord, ...]:
    try:
        versions = _VISIT.decode(_body(raw, "visit record"))
    except msgspec.DecodeError as exc:
        raise StateFormatError(f"visit record format {FORMAT}: {exc}") from exc
    if not versions:
        raise StateFormatError("visit record without versions")
    return versions


def read(patient: bytes, head: bytes | None, visits: Iterable[tuple[bytes, bytes]]) -> Stored:
    """The patient's history from its head's value and its visits' (key, value) pairs (the
    keys under `visits_prefix(patient)`, in any order)."""
    if head is not None and head[:1] != FORMAT_BYTE:
        legacy = PatientHistory(*decode(head)[:3])
        found = {vs[0].visit_id: vs for vs in legacy.visits}
        for _, raw in visits:  # none unless format 3 was written over a format 2 head
            vs = decode_visit(raw)
            found[vs[0].visit_id] = vs
        return Stored(_history(found, legacy.kx_folds, legacy.folded_through), None, (), True)
    stored = None
    if head is not None:
        try:
            stored = _HEAD.decode(_body(head, "patient head"))
        except msgspec.DecodeError as exc:
            raise StateFormatError(f"patient head format {FORMAT}: {exc}") from exc
    folded = dict(stored.folded) if stored is not None else {}
    records: dict[str, tuple[VisitRecord, ...]] = {}
    stale: list[bytes] = []
    for key, raw in visits:
        vs = decode_visit(raw)
        gone = folded.get(vs[0].visit_id)
        if gone is not None and vs[-1].seq <= gone:
            stale.append(key)  # folded; its deletion did not reach the table
            continue
        records[vs[0].visit_id] = vs
    if stored is None:
        return Stored(_history(records, (), None))
    folds = tuple(KxFold(y, b, c, u) for y, b, c, u in stored.kx)
    return Stored(_history(records, folds, stored.folded_through), stored, tuple(stale))


def _history(
    records: dict[str, tuple[VisitRecord, ...]], folds: tuple[KxFold, ...], through: date | None
) -> PatientHistory:
    return PatientHistory(tuple(records[k] for k in sorted(records)), folds, through)


def changes(
    patient: bytes, before: Stored, after: PatientHistory, visit: tuple[str, int] | None = None
) -> tuple[list[tuple[bytes, bytes | None]], Stored]:
    """The table writes that take `before` to `after` (None: delete), values first: the
    changed visits, then the head when it changed, then the deletions; and `after` as a read
    of the table would give it once they are written. `visit`: the (visit_id, seq) applied;
    one the head says was folded already is a re-delivery and changes nothing (a visit beyond
    the horizon is folded as it arrives and leaves no record that would say so)."""
    old = before.history
    if visit is not None and not old.versions(visit[0]) and before.folded_seq(visit[0]) >= visit[1]:
        return [], before
    out: list[tuple[bytes, bytes | None]] = []
    for versions in after.visits:
        visit_id = versions[0].visit_id
        prior = old.versions(visit_id)
        if before.legacy or (prior is not versions and not _same(prior, versions)):
            out.append((visit_key(patient, visit_id), encode_visit(versions)))
    removed = []
    if len(old) + 1 > len(after):  # a visit of before (or the new one) is gone
        removed = [
            (vs[0].visit_id, vs[-1].seq) for vs in old.visits if not after.versions(vs[0].visit_id)
        ]
        if visit is not None and not old.versions(visit[0]) and not after.versions(visit[0]):
            removed.append(visit)  # folded (or dropped) as it arrived
    stale = before.stale
    if (
        not removed
        and not stale
        and not before.legacy
        and after.kx_folds == old.kx_folds
        and after.folded_through == old.folded_through
    ):
        return out, Stored(after, before.head)  # the usual case: the head is unchanged
    previous = before.head or Head()
    written = {key for key, _ in out}
    stale = tuple(key for key in stale if key not in written)
    head = Head(
        tuple((f.year, f.bucket, f.cents, f.unknown_lines) for f in after.kx_folds),
        after.folded_through,
        _folded(previous.folded, removed, {key[len(patient) + 1 :].decode() for key in stale}),
    )
    kept = before.head
    if before.legacy or head != previous:
        out.append((patient, encode_head(head)))
        kept = head
    out.extend((key, None) for key in stale)
    out.extend((visit_key(patient, visit_id), None) for visit_id, _ in removed)
    return out, Stored(after, kept)


#: Folded visits the head remembers besides those whose records are still stored: enough for a
#: replay after a crash to recognise the visits it re-delivers (the newest by seq are kept).
MAX_FOLDED = 64


def _folded(
    previous: tuple[tuple[str, int], ...], now: list[tuple[str, int]], stored: set[str]
) -> tuple[tuple[str, int], ...]:
    """The head's folded visits: those whose records are still stored (deleted with this
    write, which a crash can cut off), and the newest others."""
    seqs: dict[str, int] = {}
    for visit_id, seq in (*previous, *now):
        seqs[visit_id] = max(seq, seqs.get(visit_id, -1))
    keep = {v for v in seqs if v in stored}
    others = sorted((v for v in seqs if v not in keep), key=lambda v: seqs[v])
    keep.update(others[-MAX_FOLDED:])
    return tuple(sorted((v, seqs[v]) for v in keep))


def _same(a: tuple[VisitRecord, ...], b: tuple[VisitRecord, ...]) -> bool:
    """The same versions (by identity: records are never changed once built)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


__all__ = [
    "EMPTY",
    "FORMAT",
    "SEP",
    "Head",
    "Stored",
    "changes",
    "decode_visit",
    "encode_head",
    "encode_visit",
    "read",
    "visit_key",
    "visits_prefix",
]
