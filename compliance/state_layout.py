"""Format 3: a patient's history in the table as one key per visit plus a per-patient head.

Format 2 (compliance/state_codec.py) kept the whole history as the value of the patient's key,
so every visit re-encoded and rewrote - and sent to the changelog - 5-20 KB. Format 3 writes
what a visit changed:

    patient_ref                  the head: KX totals folded past the horizon, the newest date
                                 folded, the patient's high-water seq (below); written only
                                 when a fold or deletion changes it, and at an upgrade
    patient_ref + 0x1F + visit   the visit's versions (compliance/records.py), ~100-300 bytes

A visit usually changes one key: its own. Pruning (compliance/retention.py) rewrites the head
and deletes the folded visits' keys. `patient_ref` and `visit_id` are printable ASCII
(schemas/common.py `OpaqueRef`), so 0x1F never occurs in either and the keys of one patient
are exactly the head and the keys starting with `patient_ref + 0x1F`.

Values start with a format byte (0x03) and are MessagePack arrays decoded straight into the
records (msgspec). A head holding a format 1 or 2 JSON history (it starts with `{`) is read as
that history, and the next write of the patient writes it in format 3 (`Stored.legacy`).

Crash consistency. The pipeline sends a transaction's changelog records of one partition as
one Kafka record batch (streams/pipeline.py; more than one only past 1 MiB, never splitting a
patient's keys), which the broker appends whole or not at all. So a restore gives each patient's
keys as they stood after some whole transaction, as format 2's one value did, and the batch's
inputs are then processed again (their offsets were not committed). (Exceptions, rare and
shared with format 2: an earlier owner's or an abandoned attempt's late batch landing after
newer ones - docs/reliability.md "Late changelog records".) Replaying an input over its own result
must change nothing: a visit stored with a version at or above the input's seq is left as it is
(compliance/state.py), and a visit no longer stored whose seq is at or below the patient's
high-water seq (`Head.seq`, and the seqs of the stored records) was folded or dropped after it
was applied - often as it arrived, beyond the horizon, leaving no record - and is not folded
again. Every fold and deletion rewrites the head, so the high-water seq covers every visit
folded.

Seq is the input record's offset in its partition: the high-water rule needs offsets that never
restart (an input topic deleted and created again needs its state dropped too).

Compaction (the changelog topic is compacted): each key's last record is its current value, and
a deleted visit's tombstone removes it once `delete.retention.ms` has passed - a restore that
reads the topic from the start within that time still sees the tombstone, and one after it no
longer sees the key at all. A local store kept since before a tombstone that compaction has
removed would keep the key: the worker wipes a store last written more than
TC_STATE_MAX_STALE_HOURS ago when its partition is assigned (streams/tables.py). Downgrading is not supported: a worker of an earlier version reads
format 3 neither as it is nor as missing (docs/rules.md "State").
"""

from __future__ import annotations

from collections.abc import Iterable
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


class Head(msgspec.Struct, array_like=True, gc=False):
    """The per-patient record. Fields are appended, never reordered (read by position); the
    visit status and the notices keep their per-patient state here as new trailing fields."""

    #: (year, bucket, cents, unknown lines) folded past the episode horizon.
    kx: tuple[tuple[int, str, int, int], ...] = ()
    folded_through: date | None = None
    #: The highest seq applied to the patient when the head was written (see above).
    seq: int = -1
    #: Ids of the notices published for the patient (PatientHistory.sent).
    notices: tuple[str, ...] = ()


_VISIT = msgspec.msgpack.Decoder(tuple[VisitRecord, ...])
_HEAD = msgspec.msgpack.Decoder(Head)
_ENCODER = msgspec.msgpack.Encoder()


def visit_key(patient: bytes, visit_id: str) -> bytes:
    return patient + SEP + visit_id.encode()


def visits_prefix(patient: bytes) -> bytes:
    return patient + SEP


class Stored(msgspec.Struct, frozen=True):
    """A patient's history as read from the table, and what its next write must also do. A
    Struct: built twice a visit, for a fraction of a frozen dataclass's __init__."""

    history: PatientHistory
    #: The head as stored (None: no head).
    head: Head | None = None
    #: The head held a format 1/2 history: the next write writes every visit and the head.
    legacy: bool = False

    @property
    def high_water(self) -> int:
        """The highest seq applied to the patient (-1: none)."""
        return max(self.head.seq if self.head is not None else -1, self.history.max_seq)


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
        # Visit keys beside a format 2 head: written by this format for a patient an earlier
        # version then took as new (a rolling deploy). Each visit's newest version wins.
        visits_of, folds, through, _ = decode(head)
        found = {vs[0].visit_id: vs for vs in visits_of}
        for _, raw in visits:
            vs = decode_visit(raw)
            mine = found.get(vs[0].visit_id)
            if mine is None or vs[-1].seq > mine[-1].seq:
                found[vs[0].visit_id] = vs
        return Stored(_history(found, folds, through), None, True)
    stored = None
    if head is not None:
        try:
            stored = _HEAD.decode(_body(head, "patient head"))
        except msgspec.DecodeError as exc:
            raise StateFormatError(f"patient head format {FORMAT}: {exc}") from exc
    records = {}
    for _, raw in visits:
        vs = decode_visit(raw)
        records[vs[0].visit_id] = vs
    if stored is None:
        return Stored(_history(records, (), None))
    folds = tuple(KxFold(y, b, c, u) for y, b, c, u in stored.kx)
    return Stored(_history(records, folds, stored.folded_through, stored.notices), stored)


def _history(
    records: dict[str, tuple[VisitRecord, ...]],
    folds: tuple[KxFold, ...],
    through: date | None,
    sent: tuple[str, ...] = (),
) -> PatientHistory:
    return PatientHistory(tuple(records[k] for k in sorted(records)), folds, through, sent=sent)


def tally_key(partition: int) -> bytes:
    """The partition's tally of open statuses (compliance/status.py `Tally`): 0x00 never starts
    a printable patient_ref, so the key is no patient's; the partition is in the key because a
    store may keep every partition's keys in one namespace (the memory store does)."""
    return b"\x00visit-status-tally-%d" % partition


def applied(before: Stored, visit_id: str, seq: int) -> bool:
    """A visit no longer stored whose seq is at or below the patient's high-water seq was
    applied and then folded or dropped: its event is a re-delivery (module docstring)."""
    return not before.history.versions(visit_id) and seq <= before.high_water


def changes(
    patient: bytes, before: Stored, after: PatientHistory, visit: tuple[str, int] | None = None
) -> tuple[list[tuple[bytes, bytes | None]], Stored]:
    """The table writes that take `before` to `after` (None: delete): the changed visits, the
    head when it changed, the deleted visits; and `after` as a read of the table would give it
    once they are written. `visit`: the (visit_id, seq) applied, for the high-water seq; one no
    longer stored at or below it is a re-delivery and changes nothing (module docstring)."""
    old = before.history
    if visit is not None and applied(before, *visit):
        return [], before
    out: list[tuple[bytes, bytes | None]] = []
    for versions in after.visits:
        visit_id = versions[0].visit_id
        prior = old.versions(visit_id)
        if before.legacy or (prior is not versions and not _same(prior, versions)):
            out.append((visit_key(patient, visit_id), encode_visit(versions)))
    removed = []
    if len(old) + 1 > len(after):  # a visit of before (or the new one) may be gone
        removed = [vs[0].visit_id for vs in old.visits if not after.versions(vs[0].visit_id)]
        if visit is not None and not old.versions(visit[0]) and not after.versions(visit[0]):
            removed.append(visit[0])  # folded (or dropped) as it arrived
    if (
        not removed
        and not before.legacy
        and after.kx_folds == old.kx_folds
        and after.folded_through == old.folded_through
        and after.sent == old.sent
    ):
        return out, Stored(after, before.head)  # the usual case: the head is unchanged
    seq = max(before.high_water, visit[1] if visit is not None else -1)
    head = Head(
        tuple((f.year, f.bucket, f.cents, f.unknown_lines) for f in after.kx_folds),
        after.folded_through,
        seq,
        after.sent,
    )
    out.append((patient, encode_head(head)))
    out.extend((visit_key(patient, visit_id), None) for visit_id in removed)
    return out, Stored(after, head)


def _same(a: tuple[VisitRecord, ...], b: tuple[VisitRecord, ...]) -> bool:
    """The same versions (by identity: records are never changed once built)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


__all__ = [
    "EMPTY",
    "FORMAT",
    "SEP",
    "Head",
    "Stored",
    "applied",
    "changes",
    "decode_visit",
    "encode_head",
    "encode_visit",
    "read",
    "tally_key",
    "visit_key",
    "visits_prefix",
]
