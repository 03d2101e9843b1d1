"""Format 2 of a patient history: the whole history as one deterministic, versioned JSON value
with short keys (orjson, keys sorted). The worker wrote it as the value of the patient's key
until format 3 (compliance/state_layout.py: one key per visit), which reads it and writes the
patient in format 3 at its next visit; `PatientHistory.to_bytes` still writes it (tools, tests).

Format 2:

    {"format": 2,
     "visits": [[record, ...], ...],        visits by visit_id; versions by seq
     "kx": [[year, bucket, cents, unknown_lines], ...],   KX totals folded past the horizon
     "ft": "YYYY-MM-DD"}                     newest date of service dropped (absent: none)

    record: {"id": visit_id, "s": seq, "d": date, "p": discipline,
             "n": npi, "l": [[line_id, cpt, units, [modifiers], allowed?], ...]   same-day part
             "f": flags, "r": episode_ref, "a": episode_start_date,          episode part
             "o": [doc, ...], "x": [[bucket, cents, lines, with_kx, [unknown line ids]?], ...]}
    bucket in "x": "P" (PT and SLP) or "O" (OT).
    doc: {"k": kind, "d": date, "g": signed, "c": credential, "w": role, "ps"/"pe": plan dates,
          "st": sent to certifier, "vo": verbal order, "cf"/"ct": covers, "dr": 1, "rd": disc.}

    "z": [event_id, payer, [unbilled line, ...], first_seq, status, parts_missing] (records.py: the visit
         status's fields, arrays by position; absent on records written before them)

Empty and default fields are omitted ("n"/"l" once the same-day part is dropped; a record
without "f" has no episode part). Format 1 (same-day records only) is read and upgraded: its
records are kept as they were, without an episode part.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import msgspec
import orjson

from compliance.episodes.accrual import KxFold
from compliance.records import (
    DocKind,
    DocRecord,
    EpisodePart,
    KxEntry,
    LineRecord,
    PayerRecord,
    Role,
    StatusState,
    VisitRecord,
)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)


class StateFormatError(ValueError):
    """Serialised history of an unknown format version or shape."""


#: A record's JSON object, reused by `encode` while the record is unchanged (by identity: the
#: entry holds the record, so its id cannot be reused while cached): the object `decode` read
#: it from, or the one `encode` built (so a history kept decoded in memory, the worker's
#: optional state cache, builds only its new record's object). Keeping each record's encoded
#: text instead takes ~30% less memory, but a history decoded and written once - the usual
#: case - then costs 15-40% more (bench/state-cache-issue19.txt).
JsonCache = dict[int, tuple[VisitRecord, dict[str, Any]]]
_SORTED = orjson.OPT_SORT_KEYS
_BUCKETS = {"PT_SLP": "P", "OT": "O"}
_BUCKET_OF = {v: k for k, v in _BUCKETS.items()}


def encode(
    visits: Sequence[tuple[VisitRecord, ...]],
    folds: Sequence[KxFold],
    folded_through: date | None,
    cache: JsonCache | None = None,
) -> bytes:
    """The history's bytes; the objects built for records not in `cache` are added to it (a
    history kept decoded builds only its new record's object at its next encode)."""
    cache = {} if cache is None else cache
    out: list[list[dict[str, Any]]] = []
    live = 0
    for versions in sorted(visits, key=lambda vs: vs[0].visit_id):
        row = []
        for v in versions:
            hit = cache.get(id(v))
            if hit is not None and hit[0] is v:
                row.append(hit[1])
            else:
                obj = _record_json(v)
                cache[id(v)] = (v, obj)
                row.append(obj)
        live += len(row)
        out.append(row)
    if len(cache) > 2 * live:  # records pruned since: forget them (rare)
        kept = {id(v) for versions in visits for v in versions}
        for gone in [k for k in cache if k not in kept]:
            del cache[gone]
    body: dict[str, Any] = {"format": FORMAT_VERSION, "visits": out}
    if folds:
        body["kx"] = [[f.year, f.bucket, f.cents, f.unknown_lines] for f in folds]
    if folded_through is not None:
        body["ft"] = folded_through.isoformat()
    return orjson.dumps(body, option=_SORTED)


def decode(
    raw: bytes,
) -> tuple[tuple[tuple[VisitRecord, ...], ...], tuple[KxFold, ...], date | None, JsonCache]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateFormatError(f"patient history is not JSON: {exc}") from exc
    if not isinstance(body, dict) or "format" not in body:
        raise StateFormatError("patient history has no format version")
    fmt = body["format"]
    if fmt not in READABLE_FORMATS or isinstance(fmt, bool):
        raise StateFormatError(
            f"patient history format {fmt!r} is not supported "
            f"(this engine reads formats {', '.join(map(str, READABLE_FORMATS))})"
        )
    cache: JsonCache = {}
    try:
        visits = []
        for versions in body["visits"]:
            if not versions:
                raise ValueError("a visit without versions")
            row = []
            for obj in versions:
                record = _record_of(obj)
                if fmt == FORMAT_VERSION:  # a format 1 object is not what encode would write
                    cache[id(record)] = (record, obj)
                row.append(record)
            visits.append(tuple(row))
        folds = tuple(KxFold(int(y), str(b), int(c), int(u)) for y, b, c, u in body.get("kx", ()))
        ft = body.get("ft")
        through = date.fromisoformat(ft) if ft is not None else None
        return tuple(visits), folds, through, cache
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise StateFormatError(f"patient history format {fmt}: bad record") from exc


# --- records ---------------------------------------------------------------------------------


def _record_json(v: VisitRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": v.visit_id,
        "s": v.seq,
        "d": v.date_of_service.isoformat(),
        "p": v.discipline,
    }
    if v.npi or v.lines:
        out["n"] = v.npi
        out["l"] = [_line_json(ln) for ln in v.lines]
    ep = v.episode
    if ep is not None:
        out["f"] = ep.flags
        if ep.episode_ref is not None:
            out["r"] = ep.episode_ref
        if ep.start is not None:
            out["a"] = ep.start.isoformat()
        if ep.docs:
            out["o"] = [_doc_json(d, v.date_of_service) for d in ep.docs]
        if ep.kx:
            out["x"] = [_kx_json(e) for e in ep.kx]
    if v.event_id or v.payer is not None or v.unbilled or v.first_seq >= 0 or v.status:
        out["z"] = msgspec.to_builtins(
            (v.event_id, v.payer, v.unbilled, v.first_seq, v.status, v.parts_missing)
        )
    return out


_Trailing = tuple[
    str, PayerRecord | None, tuple[LineRecord, ...], int, StatusState | None, tuple[str, ...]
]


def _kx_json(e: KxEntry) -> list[Any]:
    out: list[Any] = [_BUCKETS[e.bucket], e.cents, e.lines, e.with_kx]
    if e.unknown:
        out.append(list(e.unknown))
    return out


def _kx_of(x: list[Any]) -> KxEntry:
    unknown = tuple(map(str, x[4])) if len(x) > 4 else ()
    return KxEntry(_BUCKET_OF[x[0]], int(x[1]), unknown, int(x[2]), int(x[3]))


def _record_of(obj: dict[str, Any]) -> VisitRecord:
    # Hot path (every record of the patient, every visit): no generators for the usual
    # one-element lists, no re-validation of what orjson already typed.
    day = date.fromisoformat(obj["d"])
    raw_lines = obj.get("l")
    lines = tuple(map(_line_of, raw_lines)) if raw_lines else ()
    episode = None
    flags = obj.get("f")
    if flags is not None:
        start = obj.get("a")
        docs = obj.get("o")
        kx = obj.get("x")
        episode = EpisodePart(
            int(flags),
            obj.get("r"),
            date.fromisoformat(start) if start is not None else None,
            tuple([_doc_of(d, day) for d in docs]) if docs else (),
            (_kx_of(kx[0]),) if kx and len(kx) == 1 else tuple(map(_kx_of, kx or ())),
        )
    record = VisitRecord(
        str(obj["id"]), int(obj["s"]), day, obj.get("n", ""), str(obj["p"]), lines, episode
    )
    trailing = obj.get("z")
    if trailing is None:
        return record
    event_id, payer, unbilled, first_seq, status, parts = msgspec.convert(trailing, _Trailing)
    return msgspec.structs.replace(
        record,
        event_id=event_id,
        payer=payer,
        unbilled=unbilled,
        first_seq=first_seq,
        status=status,
        parts_missing=parts,
    )


def _line_of(x: list[Any]) -> LineRecord:
    return LineRecord(x[0], x[1], int(x[2]), tuple(x[3]), x[4] if len(x) > 4 else None)


def _line_json(ln: LineRecord) -> list[Any]:
    out: list[Any] = [ln.line_id, ln.cpt, ln.units, list(ln.modifiers)]
    if ln.allowed_amount is not None:
        out.append(ln.allowed_amount)
    return out


_DATES = (
    ("g", "signed"),
    ("ps", "plan_start"),
    ("pe", "plan_end"),
    ("st", "sent"),
    ("vo", "verbal"),
    ("cf", "covers_from"),
    ("ct", "covers_through"),
)


def _doc_json(d: DocRecord, dos: date) -> dict[str, Any]:
    out: dict[str, Any] = {"k": d.kind.value}
    if d.day != dos:
        out["d"] = d.day.isoformat()
    for key, attr in _DATES:
        value = getattr(d, attr)
        if value is not None:
            out[key] = value.isoformat()
    if d.credential is not None:
        out["c"] = d.credential
    if d.role is not Role.OTHER:
        out["w"] = d.role.value
    if d.delay_reason:
        out["dr"] = 1
    if d.discipline is not None:
        out["rd"] = d.discipline
    return out


_DATE_ATTRS = {key: attr for key, attr in _DATES} | {"d": "day"}
_KINDS = {k.value: k for k in DocKind}
_ROLES = {r.value: r for r in Role}


def _doc_of(obj: dict[str, Any], dos: date) -> DocRecord:
    # Only the keys present are visited (a document has 3-5 of the 13).
    doc = DocRecord(_KINDS[obj["k"]], dos)
    for key, value in obj.items():
        attr = _DATE_ATTRS.get(key)
        if attr is not None:
            setattr(doc, attr, date.fromisoformat(value))
        elif key == "c":
            doc.credential = str(value)
        elif key == "w":
            doc.role = _ROLES[value]
        elif key == "dr":
            doc.delay_reason = bool(value)
        elif key == "rd":
            doc.discipline = str(value)
        elif key != "k":
            raise ValueError(f"unknown document field {key!r}")
    return doc


__all__ = [
    "FORMAT_VERSION",
    "READABLE_FORMATS",
    "JsonCache",
    "StateFormatError",
    "decode",
    "encode",
]
