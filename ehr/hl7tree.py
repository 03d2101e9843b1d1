"""A typed, read-only view of a message parsed by python-hl7 (PyPI `hl7`).

python-hl7 gives an irregular tree (a field is a plain string, or repetitions of strings or of
components) and 1-based accessors that raise on absent parts. This view flattens it once into
tuples (field -> repetitions -> components -> subcomponents) with escape sequences resolved, so the
profile code reads `seg.value(25, comp=1)` and gets '' for anything absent. Escapes are resolved
here rather than by `hl7.util.unescape`, which logs the field's text on a malformed sequence: that
text may be PID content, and nothing patient-related may reach a log.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import hl7  # type: ignore[import-untyped]

Subs = tuple[str, ...]
Comps = tuple[Subs, ...]
Reps = tuple[Comps, ...]

#: HL7 "" is an explicit null (v2.5 ch. 2.5.3): for reading, the same as absent.
_NULL = '""'


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    #: fields[n] is field n (HL7 numbering; fields[0] is unused, for MSH fields[1] is MSH-1).
    fields: tuple[Reps, ...]

    def reps(self, n: int) -> Reps:
        """Repetitions of field n that hold anything."""
        if n >= len(self.fields):
            return ()
        return tuple(r for r in self.fields[n] if any(any(s for s in c) for c in r))

    def value(self, n: int, comp: int = 1, sub: int = 1, rep: int = 1) -> str:
        """One leaf, stripped; '' when absent."""
        reps = self.fields[n] if n < len(self.fields) else ()
        if rep > len(reps):
            return ""
        return leaf(reps[rep - 1], comp, sub)

    def has(self, n: int) -> bool:
        return bool(self.reps(n))


def leaf(rep: Comps, comp: int = 1, sub: int = 1) -> str:
    if comp > len(rep) or sub > len(rep[comp - 1]):
        return ""
    text = rep[comp - 1][sub - 1].strip()
    return "" if text == _NULL else text


@dataclass(frozen=True, slots=True)
class Message:
    segments: tuple[Segment, ...]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)


def parse(text: str) -> Message | None:
    """python-hl7 parse + flatten; None when the text is not an HL7 message."""
    try:
        parsed = hl7.parse(text)
        esc, seps = str(parsed.esc), str(parsed.separators)
        segments = tuple(_segment(seg, esc, seps) for seg in parsed)
    except Exception:
        return None
    if not segments or segments[0].name != "MSH":
        return None
    return Message(segments)


def _segment(seg: Any, esc: str, seps: str) -> Segment:
    name = str(seg[0][0]) if len(seg) and len(seg[0]) else ""
    fields: list[Reps] = [((("",),),)]
    start = 1
    if name in ("MSH", "BHS", "FHS"):
        # MSH-1 (field separator) and MSH-2 (encoding characters) are literal, never unescaped.
        fields += [(((str(seg[1][0]),),),), (((str(seg[2][0]),),),)]
        start = 3
    for field in list(seg)[start:]:
        fields.append(_field(field, esc, seps))
    return Segment(name, tuple(fields))


def _field(field: Any, esc: str, seps: str) -> Reps:
    reps: list[Comps] = []
    for rep in field:
        if isinstance(rep, str):
            reps.append(((unescape(rep, esc, seps),),))
            continue
        comps: list[Subs] = []
        for comp in rep:
            if isinstance(comp, str):
                comps.append((unescape(comp, esc, seps),))
            else:
                comps.append(tuple(unescape(str(s), esc, seps) for s in comp))
        reps.append(tuple(comps))
    return tuple(reps)


def unescape(text: str, esc: str, seps: str) -> str:
    """HL7 v2.5 ch. 2.7: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\Xhh..\\ (hex), .br/.sp line breaks;
    formatting and charset-switch sequences are dropped. Never logs."""
    if not esc or esc not in text:
        return text
    mapping = {"F": seps[1], "R": seps[2], "S": seps[3], "T": seps[4], "E": esc}
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        end = text.find(esc, i + 1) if ch == esc else -1
        if end < 0:
            out.append(ch)
            i += 1
            continue
        seq = text[i + 1 : end]
        if seq in mapping:
            out.append(mapping[seq])
        elif seq in (".br", ".sp", ".ce"):
            out.append("\n")
        elif seq.startswith("X") and len(seq) % 2 == 1:
            with contextlib.suppress(ValueError):  # malformed hex: dropped, like other junk
                out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
        i = end + 1
    return "".join(out)
