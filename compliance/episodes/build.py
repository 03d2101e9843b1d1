"""The judged visit's episode part (compliance/records.py), built once from its context: the
facts its later visits will be judged with."""

from __future__ import annotations

from datetime import date, datetime

from compliance.catalog import EvaluationKind
from compliance.kx_thresholds import KxBucket, to_cents
from compliance.records import (
    INITIAL_EVALUATION,
    RE_EVALUATION,
    SERVICE,
    DocKind,
    DocRecord,
    EpisodePart,
    KxEntry,
    Role,
)
from compliance.rules.context import VisitContext
from schemas.common import DocumentKind
from schemas.visit import Document

KINDS = {
    DocumentKind.PROGRESS_REPORT: DocKind.PROGRESS_REPORT,
    DocumentKind.RE_EVALUATION: DocKind.RE_EVALUATION,
    DocumentKind.DISCHARGE_SUMMARY: DocKind.DISCHARGE_SUMMARY,
    DocumentKind.PLAN_OF_CARE: DocKind.PLAN_OF_CARE,
    DocumentKind.CERTIFICATION: DocKind.CERTIFICATION,
    DocumentKind.REFERRAL: DocKind.REFERRAL,
}


def episode_part(ctx: VisitContext) -> EpisodePart:
    visit = ctx.visit
    policy = ctx.rules.episodes.progress_report
    clinician = visit.rendering_provider.credential in policy.clinicians
    flags = SERVICE if visit.services else 0
    # Pub. 100-02, Ch. 15, sec. 220.3 C: CPT has no SLP re-evaluation code ("use the evaluation
    # code"), so an evaluation code on a visit that also carries a re_evaluation document is a
    # re-evaluation, not the start of a new episode.
    re_documented = any(d.kind is DocumentKind.RE_EVALUATION for d in visit.documents)
    for ln in ctx.lines:
        entry = ln.entry
        if entry is None or entry.evaluates is None or entry.evaluates.value != visit.discipline:
            continue
        kind = entry.evaluation_kind
        if kind is EvaluationKind.INITIAL and not re_documented:
            flags |= INITIAL_EVALUATION
        elif kind is not None and clinician:
            # A re-evaluation is a clinician's service (sec. 220.3 C): it restarts the period.
            flags |= RE_EVALUATION
    docs = tuple(_doc(d, visit.date_of_service, ctx) for d in visit.documents if d.kind in KINDS)
    return EpisodePart(
        flags,
        visit.episode_ref,
        visit.episode_start_date,
        docs,
        _kx(ctx),
    )


def _doc(d: Document, dos: date, ctx: VisitContext) -> DocRecord:
    policy = ctx.rules.episodes.progress_report
    cred = d.author_credential
    role = (
        Role.CLINICIAN
        if cred in policy.clinicians
        else Role.ASSISTANT
        if cred in policy.assistants
        else Role.OTHER
    )
    day = d.document_date if d.document_date is not None and d.document_date < dos else dos
    return DocRecord(
        KINDS[d.kind],
        day,
        _day(d.signed_at),
        cred.value if cred is not None else None,
        role,
        d.plan_start,
        d.plan_end,
        _day(d.sent_to_certifier_at),
        _day(d.verbal_order_at),
        d.covers_from,
        d.covers_through,
        bool(d.delay_reason_documented),
        d.discipline.value if d.discipline is not None else None,
    )


def _day(moment: datetime | None) -> date | None:
    # The calendar date as the EHR wrote it (its own offset): "day counts are calendar days of
    # the dates, not hours" (EVENTS.md), and a clinic's day is its local day.
    return moment.date() if moment is not None else None


def _kx(ctx: VisitContext) -> tuple[KxEntry, ...]:
    if not ctx.policy.kx_threshold:
        return ()
    lines = ctx.therapy_lines()
    if not lines:
        return ()
    known = 0
    unknown: list[str] = []
    for ln in lines:
        amount = ctx.line_amount(ln)
        if amount is None:
            unknown.append(ln.id)
        else:
            known += to_cents(amount)
    with_kx = sum(1 for ln in lines if "KX" in ln.line.modifiers)
    bucket = KxBucket.of(ctx.visit.discipline.value).value
    return (KxEntry(bucket, known, tuple(sorted(unknown)), len(lines), with_kx),)


__all__ = ["episode_part"]
