"""The pure join: the stored parts of one visit -> a `TherapyVisitCompleted` v1 payload.

The Kafka side keeps one `VisitState` per visit key (a table), folds every arriving part into it
with `add_part` (idempotent, order-independent: the newest version of each part wins), and calls
`assemble` after each change (complete visits) or when the join's wait expires
(`partial_ok=True`: a visit with one part, marked in `parts_missing`).

Additive field on the emitted visit (unknown to v1 readers, which ignore it): `parts_missing`,
a list of "charges" / "documentation", present only on a visit assembled with one part missing;
the rules `CHARGES_NOT_RECEIVED` / `DOCUMENTATION_NOT_RECEIVED` read it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ehr.credits import CreditProblem, CreditRefused, apply_credits
from ehr.parts import ChargePart, CreditPart, DocumentationPart, VisitKey
from ehr.rejection import Rejection, RejectReason
from schemas.common import Credential, Discipline, PayerKind

MissingPart = Literal["charges", "documentation"]
Part = ChargePart | CreditPart | DocumentationPart

#: event_id namespace (uuid5): the same visit key and part versions always give the same id.
EVENT_NAMESPACE = uuid.UUID("6f1d7c2e-6a0b-5d8e-9c41-3b7a2f0e9d15")
#: Placeholders on a visit assembled without charges (`parts_missing` says so; payer-, NPI- and
#: unit rules must not judge them).
UNKNOWN_PAYER = {"payer_id": "UNKNOWN", "kind": PayerKind.OTHER.value}
UNKNOWN_NPI = "0000000000"


class SeenMessage(BaseModel):
    """What one HL7 message (by its MSH-10) brought to the visit: the SHA-256 of the message
    itself (`PartVersion.message_sha256`; None for a part parsed before that field existed) and
    its MSH-7."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    digest: str | None = None
    at: AwareDatetime
    part: Literal["charges", "credit", "documentation"]


class VisitState(BaseModel):
    """The stored parts of one visit (the join table's value). Documentation parts are keyed by
    their `source_id` (MDM TXA-12, ORU OBR-3, FHIR document / encounter procedures).
    `messages`: every HL7 v2 message control id (MSH-10) the visit took, with the message's
    digest, also of versions since replaced, so a control id reused for other content is caught
    however late it comes (a record written before this field existed reads as empty: its
    control ids are not checked, docs/integration-hl7.md "The join")."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    visit: VisitKey
    charges: ChargePart | None = None
    documentation: dict[str, DocumentationPart] = Field(default_factory=dict)
    #: Credits (FT1-6 CD) by their control id (MSH-10); those newer than `charges` apply.
    credits: dict[str, CreditPart] = Field(default_factory=dict)
    messages: dict[str, SeenMessage] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControlIdConflict:
    """An HL7 message whose MSH-10 the visit already took with other content. HL7 v2.5.1 ch.
    2.14.9.10: MSH-10 "uniquely identifies the message" (the ACK's MSA-2 echoes it), so the same
    id with different content is a sender fault: the second is refused, never a correction of
    the first. `detail` names the control id, both message digests and MSH-7 times: no patient
    data."""

    control_id: str
    first: SeenMessage
    second: SeenMessage

    @property
    def detail(self) -> str:
        def one(m: SeenMessage) -> str:
            return f"{m.part}, message sha256 {(m.digest or '')[:16]}, MSH-7 {_utc_text(m.at)}"

        return (
            f"MSH-10 control id {self.control_id!r} was already taken for this visit with other "
            f"content (first: {one(self.first)}; this one: {one(self.second)}): a control id "
            "identifies one message (HL7 v2.5.1 ch. 2.14.9.10); send a correction under a new "
            "MSH-10"
        )


@dataclass(frozen=True, slots=True)
class AssemblyProblem:
    """The parts cannot form a valid visit; `detail` names why (no patient data)."""

    detail: str


def digest(part: Part) -> str:
    """SHA-256 of the part's JSON: the last tie-break of `version_key` (two different parts
    never tie). Not the control id check's digest: that is the message's own (`_seen`)."""
    return hashlib.sha256(part.model_dump_json().encode()).hexdigest()


def version_key(part: Part) -> tuple[datetime, str, str]:
    """Order of versions: source time (MSH-7, FHIR lastUpdated), then control id, then a digest of
    the content, so two different parts never tie and every arrival order gives one winner."""
    return (part.version.at, part.version.control_id, digest(part))


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seen(part: Part) -> SeenMessage:
    return SeenMessage(digest=part.version.message_sha256, at=part.version.at, part=part.part)


def conflict(state: VisitState | None, part: Part) -> ControlIdConflict | None:
    """The clash when `part` is an HL7 v2 message whose MSH-10 the visit already took with
    another message (a different SHA-256 of the message bytes: how a parser version or the
    profile reads them plays no part); None for a first message or an identical re-delivery.
    Without both digests (a join record or a part from before `message_sha256` existed) there is
    no check: version order decides, as it did then (no false conflict after an upgrade). FHIR
    parts are not checked: one bundle's parts share its Bundle.id as their control id."""
    if state is None or part.source != "hl7v2":
        return None
    first = state.messages.get(part.version.control_id)
    second = _seen(part)
    if first is None or first.digest is None or second.digest is None:
        return None
    if first.digest == second.digest:
        return None
    return ControlIdConflict(part.version.control_id, first, second)


def is_newer(candidate: Part, current: Part) -> bool:
    """True when `candidate` replaces `current` (a correction, a re-sent DFT, a T08/T10 edit or a
    T11 cancel that is newer). An identical re-delivery is not newer: state does not change."""
    return version_key(candidate) > version_key(current)


def add_part(state: VisitState | None, part: Part) -> VisitState:
    """Fold one part into the visit's state. Idempotent and commutative, except that an HL7 part
    whose control id the visit took with other content (`conflict`) leaves the state unchanged
    (the first message with a control id stands; callers report the second), and a credit that
    cannot apply to the charges held now raises `CreditRefused` (state unchanged)."""
    state = state or VisitState(visit=part.visit)
    if part.visit != state.visit:
        raise ValueError("the part belongs to another visit")
    if conflict(state, part) is not None:
        return state
    if part.source == "hl7v2":
        known = state.messages.get(part.version.control_id)
        # Recorded once; an entry without a digest (a part parsed before message_sha256) takes
        # the first digest that comes.
        if known is None or (known.digest is None and part.version.message_sha256 is not None):
            messages = {**state.messages, part.version.control_id: _seen(part)}
            state = state.model_copy(update={"messages": messages})
    if isinstance(part, CreditPart):
        return _add_credit(state, part)
    if isinstance(part, ChargePart):
        if state.charges is None or is_newer(part, state.charges):
            return state.model_copy(update={"charges": part})
        return state
    current = state.documentation.get(part.source_id)
    if current is None or is_newer(part, current):
        docs = {**state.documentation, part.source_id: part}
        return state.model_copy(update={"documentation": docs})
    return state


def fold(state: VisitState | None, part: Part) -> VisitState | Rejection:
    """`add_part`, or the rejection the caller reports for a part the join refuses: a control id
    the visit took with other content (`conflict`), or a credit that cannot apply
    (`CreditRefused`). The one refusal path of the worker's join and of `convert`."""
    clash = conflict(state, part)
    if clash is not None:
        return Rejection.one(RejectReason.CONTROL_ID_CONFLICT, clash.detail, part.message_id)
    try:
        return add_part(state, part)
    except CreditRefused as refused:
        return refused.rejection(part.message_id)


def _add_credit(state: VisitState, part: CreditPart) -> VisitState:
    key = part.version.control_id
    current = state.credits.get(key)
    if current is not None and not is_newer(part, current):
        return state  # a re-delivery: taken off once
    if state.charges is None:
        raise CreditRefused(
            CreditProblem(RejectReason.CREDIT_UNMATCHED, "the visit has no charges to credit")
        )
    if not _credit_applies(part, state.charges):
        # A DFT of charges is the visit's full set: a newer one already holds any correction.
        raise CreditRefused(
            CreditProblem(
                RejectReason.CREDIT_UNMATCHED,
                "the credit is older (MSH-7) than the visit's current charges, which replaced the "
                "charges it reverses",
            )
        )
    added = state.model_copy(update={"credits": {**state.credits, key: part}})
    made = charges_after_credits(added)
    if isinstance(made, CreditProblem):
        raise CreditRefused(made)
    return added


def _credit_applies(credit: CreditPart, charges: ChargePart) -> bool:
    """A credit applies to the charges unless their MSH-7 is strictly later (then a newer DFT,
    the visit's full set, replaced the charges it reversed). On equal MSH-7 it applies: a credit
    follows the charge it reverses, and MSH-10 (HL7 v2.5.1 ch. 2.14.9.10) is an identifier, not
    an order, so control ids are never compared for this."""
    return credit.version.at >= charges.version.at


def applied_credits(state: VisitState) -> list[CreditPart]:
    """The credits that apply (`_credit_applies`), oldest first: an older credit was reversing
    charges that a newer DFT replaced."""
    if state.charges is None:
        return []
    charges = state.charges
    applying = (c for c in state.credits.values() if _credit_applies(c, charges))
    return sorted(applying, key=version_key)


def charges_after_credits(state: VisitState) -> ChargePart | CreditProblem | None:
    """The visit's charges less its credits (ehr/credits.py); None without charges."""
    if state.charges is None:
        return None
    credits = applied_credits(state)
    return apply_credits(state.charges, credits) if credits else state.charges


def _active_docs(state: VisitState) -> list[DocumentationPart]:
    docs = [d for d in state.documentation.values() if d.status == "active"]
    return sorted(docs, key=version_key)


def missing_part(state: VisitState) -> MissingPart | None:
    """Which half is absent: 'charges', 'documentation' (no active documentation: none arrived or
    all were cancelled), or None when both are there. With neither, 'charges' (documentation of a
    visit always has charges waiting for it, but the reverse is what the checks act on first)."""
    if state.charges is None:
        return "charges"
    if not _active_docs(state):
        return "documentation"
    return None


def assemble(
    state: VisitState, *, partial_ok: bool = False
) -> dict[str, Any] | AssemblyProblem | None:
    """The visit as a TherapyVisitCompleted v1 JSON dict; None when a part is missing and
    `partial_ok` is False (keep waiting); an AssemblyProblem when the parts cannot form a visit."""
    docs = _active_docs(state)
    missing = missing_part(state)
    if missing is not None and not partial_ok:
        return None
    if state.charges is None and not docs:
        return AssemblyProblem("the visit has no charges and no active documentation")
    charges = charges_after_credits(state)
    if isinstance(charges, CreditProblem):  # a credit stored before older charges arrived
        return AssemblyProblem(f"{charges.reason.value}: {charges.detail}")
    used: list[Part] = [
        *([state.charges] if state.charges else []),
        *applied_credits(state),
        *docs,
    ]
    refs = {p.patient_ref for p in used}
    if len(refs) != 1:
        return AssemblyProblem("charges and documentation name different patients for one visit")
    minutes_source = next((d for d in reversed(docs) if d.has_minutes), None)
    if charges is not None:
        body = _from_charges(charges, docs, minutes_source)
    else:
        made = _from_documentation(docs)
        if isinstance(made, AssemblyProblem):
            return made
        body = made
    occurred = max(p.version.at for p in used).astimezone(UTC)
    dos = body["date_of_service"]
    if dos > occurred.date() + timedelta(days=1):
        # Contract: date_of_service not after occurred_at (one day of slack for time zones).
        occurred = max(occurred, datetime.combine(dos, time(), UTC))
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id(state.visit, used, missing),
        "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
        "visit_id": state.visit.text,
        "patient_ref": refs.pop(),
        **body,
        "date_of_service": dos.isoformat(),
    }
    if minutes_source is not None:
        for name in ("total_timed_minutes", "total_treatment_minutes"):
            value = getattr(minutes_source, name)
            if value is not None:
                event[name] = value
    event["documents"] = _documents(docs)
    episode = next((d.episode_start_date for d in reversed(docs) if d.episode_start_date), None)
    if episode is not None:
        event["episode_start_date"] = episode.isoformat()
    if missing is not None:
        event["parts_missing"] = [missing]
    return event


def event_id(visit: VisitKey, used: list[Part], missing: MissingPart | None) -> str:
    """uuid5 of the visit key and the (source, control id, time) of every part used: re-emitting
    the same assembly gives the same id (so the same alert ids), a correction a new one."""
    versions = sorted(
        f"{p.part}:{getattr(p, 'source_id', '')}:{p.version.control_id}:{p.version.at.isoformat()}"
        for p in used
    )
    text = "|".join([visit.text, *versions, f"missing={missing or ''}"])
    return str(uuid.uuid5(EVENT_NAMESPACE, text))


def _from_charges(
    charges: ChargePart, docs: list[DocumentationPart], minutes_source: DocumentationPart | None
) -> dict[str, Any]:
    # The note's minutes win over minutes a charge states (PR1-7): the note is what is audited.
    # Several lines of one code: the code's minutes go on its first line (the rules pool lines
    # of one code; docs/rules.md).
    by_cpt = dict(minutes_source.minutes_by_cpt) if minutes_source else {}
    assistant = dict(minutes_source.assistant_minutes_by_cpt) if minutes_source else {}
    services: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line in charges.lines:
        item: dict[str, Any] = {
            "line_id": line.line_id,
            "cpt": line.cpt,
            "units": line.units,
            "modifiers": list(line.modifiers),
        }
        first = line.cpt not in seen
        seen.add(line.cpt)
        # The note's minutes for a code it documents, else what the charge states (PR1-7).
        minutes = (by_cpt[line.cpt] if first else None) if line.cpt in by_cpt else line.minutes
        if minutes is not None:
            item["minutes"] = minutes
        if first and line.cpt in assistant and minutes is not None:
            item["assistant_minutes"] = min(assistant[line.cpt], minutes)
        if line.allowed_amount is not None:
            item["allowed_amount"] = line.allowed_amount
        services.append(item)
    # Documented but not billed: a line with 0 units (contract: "performed and documented but
    # not billed"), so its minutes count in the CMS pooled total (Pub. 100-04, Ch. 5, sec. 20.2).
    taken = {s["line_id"] for s in services}
    for cpt, minutes in sorted(by_cpt.items()):
        if cpt not in seen:
            line_id = _free_id(f"doc-{cpt}", taken)
            services.append(
                {"line_id": line_id, "cpt": cpt, "units": 0, "minutes": minutes, "modifiers": []}
            )
    credential = charges.rendering_credential or next(
        (d.author_credential for d in docs if d.author_npi == charges.rendering_npi), None
    )
    payer: dict[str, Any] = {"payer_id": charges.payer.payer_id, "kind": charges.payer.kind.value}
    if charges.payer.unit_rule is not None:
        payer["unit_rule"] = charges.payer.unit_rule.value
    return {
        "date_of_service": charges.date_of_service,
        "discipline": charges.discipline.value,
        "payer": payer,
        # Contract credential is required; OTHER when neither feed says (docs/integration-hl7.md).
        "rendering_provider": {
            "npi": charges.rendering_npi,
            "credential": (credential or Credential.OTHER).value,
        },
        "services": services,
    }


def _free_id(base: str, taken: set[str]) -> str:
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def _from_documentation(docs: list[DocumentationPart]) -> dict[str, Any] | AssemblyProblem:
    newest_first = list(reversed(docs))
    dos = next((d.date_of_service for d in newest_first if d.date_of_service), None)
    discipline: Discipline | None = next((d.discipline for d in newest_first if d.discipline), None)
    if dos is None or discipline is None:
        return AssemblyProblem(
            "no charges arrived and the documentation names no "
            + ("date of service" if dos is None else "discipline")
        )
    author = next((d for d in newest_first if d.author_npi), None)
    return {
        "date_of_service": dos,
        "discipline": discipline.value,
        "payer": dict(UNKNOWN_PAYER),
        "rendering_provider": {
            "npi": author.author_npi if author and author.author_npi else UNKNOWN_NPI,
            "credential": (
                author.author_credential
                if author and author.author_credential
                else Credential.OTHER
            ).value,
        },
        "services": [],
    }


def _documents(docs: list[DocumentationPart]) -> list[dict[str, Any]]:
    """Every active part's documents; one doc_id once (the newest part's)."""
    out: dict[str, dict[str, Any]] = {}
    for part in docs:  # oldest first: newer parts overwrite
        for doc in part.documents:
            out[doc.doc_id] = doc.model_dump(mode="json", exclude_none=True)
    return list(out.values())
