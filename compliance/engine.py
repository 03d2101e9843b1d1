"""The compliance engine: a validated visit (and the patient's history) in, findings, alert
events and the updated history out. No I/O."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

import msgspec
from pydantic import BaseModel

from compliance.alerts import AlertEvent, CheckedEvent, build_alerts, build_checked
from compliance.catalog import Catalog
from compliance.episodes.build import episode_part
from compliance.episodes.judge import EpisodeJudgement, EpisodeStatus, judge
from compliance.episodes.segments import group_key
from compliance.findings import Finding
from compliance.kx_thresholds import KxBucket
from compliance.notices import Notice, at_visit, due_between, leaves_dates
from compliance.policy import PayerPolicies, ResolvedPolicy
from compliance.records import OpenAlert, StatusState, VisitRecord
from compliance.rejudge import affected
from compliance.retention import MAX_VERSIONS
from compliance.rules import RULE_IDS, SCOPED_RULES, Rule, Scope, VisitContext, rules_of
from compliance.rules.feed_parts import without_consequences
from compliance.rules.kx import sides
from compliance.ruleset import ENGINE_VERSION, RuleSet, default_ruleset
from compliance.state import DEFAULT_EPISODE_HORIZON_DAYS, DEFAULT_HORIZON_DAYS, PatientHistory
from compliance.status import (
    StatusEvent,
    Subject,
    build_status,
    ids,
    merged,
    next_state,
    open_alerts,
)
from schemas.common import Credential, Discipline, PayerKind, UnitRule
from schemas.notice import ComplianceNotice
from schemas.visit import Payer, RenderingProvider, ServiceLine, TherapyVisitCompleted
from schemas.visit_status import StatusCause

__all__ = ["ENGINE_VERSION", "Engine", "EpisodeStatus", "Outcome"]


def _no() -> bool:
    return False


# Outcome and _Run are Structs: built per visit, for a fraction of a frozen dataclass's
# __init__ (object.__setattr__ per field).
class Outcome(msgspec.Struct, frozen=True):
    alerts: list[AlertEvent]
    checked: CheckedEvent
    #: The patient's history with this visit applied; None when no history was passed in.
    history: PatientHistory | None = None
    #: Whether the episode rules were evaluated for this visit (for a metric by status):
    #: `start_unseen` = the episode's start was never seen and no episode_start_date was given,
    #: so PROGRESS_REPORT_*, PLAN_OF_CARE_MISSING, CERTIFICATION_MISSING and
    #: RECERTIFICATION_MISSING were not evaluated (EVENTS.md: counted, never guessed).
    episode_status: EpisodeStatus = EpisodeStatus.NO_HISTORY
    #: This visit's Medicare Part B therapy lines whose amount is unknown (no allowed_amount and
    #: no fee schedule row): they do not count toward the KX accrual.
    kx_unknown_amount_lines: int = 0
    #: `VisitStatus` v1 records to publish, in order: this visit's first, then the other visits
    #: whose open alerts the event changed (by date of service, visit id). Empty without a
    #: history and for an event already applied (a re-delivery).
    statuses: list[StatusEvent] = msgspec.field(default_factory=list)
    #: Alerts a re-judgement newly raised on other visits (ids from their current events).
    raised: list[AlertEvent] = msgspec.field(default_factory=list)
    #: `ComplianceNotice` v1 records the visit brought due, not published before for the
    #: patient (compliance/notices.py); empty without a history and for a re-delivery.
    notices: list[ComplianceNotice] = msgspec.field(default_factory=list)
    #: Whether the event is a new visit that cannot change the date-driven notices of any date
    #: (notices.leaves_dates): the dates after it need not be judged again when it arrives
    #: late. Computed when asked (only a late visit needs it).
    dates_unchanged: Callable[[], bool] = _no

    @property
    def episode_start_unseen(self) -> bool:
        return self.episode_status is EpisodeStatus.START_UNSEEN


class _Run(msgspec.Struct, frozen=True):
    findings: list[Finding]
    #: Each finding's rule family scope.
    scopes: list[str]
    judgement: EpisodeJudgement | None
    record: VisitRecord | None
    #: The patient's other visits as they stood before the event (with a history).
    seen: list[VisitRecord] = msgspec.field(default_factory=list)


class Engine:
    """Holds one rule set (loaded and validated once) and runs every rule."""

    __slots__ = ("episode_horizon_days", "horizon_days", "rules")

    def __init__(
        self,
        catalog: Catalog | None = None,
        policies: PayerPolicies | None = None,
        *,
        ruleset: RuleSet | None = None,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        episode_horizon_days: int | None = None,
    ) -> None:
        """`horizon_days`: days of same-day details kept per patient (TC_HISTORY_HORIZON_DAYS);
        `episode_horizon_days`: days of episode and KX state (default: 400, or horizon_days when
        longer); both relative to the patient's newest date of service (retention.py)."""
        rules = ruleset if ruleset is not None else default_ruleset()
        if catalog is not None or policies is not None:
            # Tests swap single tables; the version then no longer names shipped files.
            rules = replace(
                rules,
                catalog=catalog or rules.catalog,
                policies=policies or rules.policies,
                version=rules.version + "+custom",
            )
        if horizon_days < 0:
            raise ValueError("horizon_days must be >= 0")
        if episode_horizon_days is None:
            episode_horizon_days = max(DEFAULT_EPISODE_HORIZON_DAYS, horizon_days)
        if episode_horizon_days < horizon_days:
            raise ValueError("episode_horizon_days must be >= horizon_days")
        self.rules = rules
        self.horizon_days = horizon_days
        self.episode_horizon_days = episode_horizon_days

    @property
    def catalog(self) -> Catalog:
        return self.rules.catalog

    @property
    def policies(self) -> PayerPolicies:
        return self.rules.policies

    @property
    def ruleset_version(self) -> str:
        return self.rules.version

    @property
    def rules_evaluated(self) -> int:
        return len(RULE_IDS)

    def check(
        self,
        visit: TherapyVisitCompleted,
        history: PatientHistory | None = None,
        seq: int | None = None,
    ) -> list[Finding]:
        """All findings for a visit; none for a compliant one. Deterministic order. With a
        history, the visit is judged against its entries with seq' < seq (state.py); the
        episode and KX rules run only with a history."""
        return self._run(visit, history, seq).findings

    def _run(
        self, visit: TherapyVisitCompleted, history: PatientHistory | None, seq: int | None
    ) -> _Run:
        policy = self.policies.resolve(visit)
        judgement = record = None
        if history is None:
            ctx = VisitContext.build(visit, self.rules, policy)
        else:
            if seq is None:
                raise ValueError("seq is required with a history")
            seen = list(history.seen_before(seq, visit.visit_id))
            first = min((v.first for v in history.versions(visit.visit_id)), default=seq)
            first = min(first, seq)
            ctx = self._context(visit, policy, seen, first)
            record = VisitRecord.of(visit, seq, episode_part(ctx), first)
            judgement = judge(record, history, seen, self.episode_horizon_days)
            ctx = ctx.with_episode(judgement)
        findings, scopes = _apply(SCOPED_RULES, ctx)
        return _Run(findings, scopes, judgement, record, seen if history is not None else [])

    def _context(
        self,
        visit: TherapyVisitCompleted,
        policy: ResolvedPolicy,
        seen: Sequence[VisitRecord],
        first: int,
    ) -> VisitContext:
        """The visit's context with the visits of its date split at its place (segments.order):
        a correction keeps its visit's place, so it is not judged against visits that came
        after it (only the add-on rule reads those)."""
        day = visit.date_of_service
        today = [v for v in seen if v.date_of_service == day]
        return VisitContext.build(
            visit,
            self.rules,
            policy,
            tuple(v for v in today if v.first < first),
            tuple(v for v in today if v.first > first),
        )

    def judge_now(
        self,
        record: VisitRecord,
        history: PatientHistory,
        patient_ref: str,
        scopes: frozenset[Scope],
    ) -> tuple[list[AlertEvent], list[str]]:
        """The alerts of the rules of `scopes` for a visit's current record, judged with every
        other visit of `history` as it stands now (re-judgement: compliance/rejudge.py), and
        each one's scope. The record must be `judgeable`; alert ids come from its event id."""
        visit = _visit_of(record, patient_ref)
        seen = [vs[-1] for vs in history.visits if vs[0].visit_id != record.visit_id]
        ctx = self._context(visit, self.policies.resolve(visit), seen, record.first)
        if Scope.EPISODE in scopes or Scope.KX in scopes:
            ctx = ctx.with_episode(judge(record, history, seen, self.episode_horizon_days))
        findings, kinds = _apply(_rules_of(scopes), ctx)
        return build_alerts(visit, findings, _EPOCH, ENGINE_VERSION, self.rules.version), kinds

    def evaluate(
        self,
        visit: TherapyVisitCompleted,
        now: datetime,
        history: PatientHistory | None = None,
        seq: int | None = None,
    ) -> Outcome:
        if history is None or seq is None:
            return self._outcome(visit, now, self._run(visit, history, seq))
        current = history.versions(visit.visit_id)
        delivered = _delivered(current, visit.event_id)
        if delivered is not None:
            # An event already seen (EVENTS.md: re-delivery changes nothing; it "publishes no
            # status"): judged as when it was applied, when its version is still kept.
            run = self._run(visit, history, delivered if delivered >= 0 else seq)
            return self._outcome(visit, now, run, history)
        run = self._run(visit, history, seq)
        assert run.record is not None
        if current and current[-1].seq >= seq:
            return self._outcome(visit, now, run, history)  # a replay over its own result
        outcome = self._outcome(visit, now, run)
        old = current[-1] if current else None
        previous = old.status if old is not None else None
        kept_from = len(current) + 1 - MAX_VERSIONS
        state = next_state(
            previous,
            open_alerts(outcome.alerts, run.scopes),
            [v.event_id for v in current[: max(0, kept_from)] if v.event_id],
        )
        record = run.record.with_status(state)
        cause = (visit.event_id, visit.visit_id)
        statuses = [
            self._status(
                Subject.of(record, visit.patient_ref),
                previous,
                state,
                StatusCause.VISIT if old is None else StatusCause.CORRECTION,
                cause,
                now,
            )
        ]
        updated = history.apply(record, self.horizon_days, self.episode_horizon_days)
        updated, related, raised = self._rejudge(history, updated, old, record, visit, now)
        statuses.extend(related)
        found = at_visit(record, run.judgement, run.seen, self.rules)
        notices, updated = _unsent(found, updated, visit.patient_ref, now)
        # judge() saw every other current record only for a seq above the history's.
        quiet: Callable[[], bool] = _no
        if old is None and seq > history.max_seq:
            quiet = functools.partial(leaves_dates, run.record, run.judgement, run.seen, self.rules)
        return Outcome(
            outcome.alerts,
            outcome.checked,
            updated,
            outcome.episode_status,
            outcome.kx_unknown_amount_lines,
            statuses,
            raised,
            notices,
            quiet,
        )

    def notices_due(
        self,
        history: PatientHistory,
        patient_ref: str,
        start: date,
        end: date,
        now: datetime,
        visit_id: str | None = None,
    ) -> tuple[list[ComplianceNotice], PatientHistory]:
        """A daily run (and its catch-up) for one patient: the date-driven notices due on the
        dates `start` through `end`, each as of its first date, that were not published for
        the patient before; and the history remembering them. `visit_id`: only the episodes
        that visit's versions belong to (a late visit changes no other episode's dates)."""
        if start > end or not history.visits:
            return [], history
        records = [vs[-1] for vs in history.visits]
        if visit_id is not None:
            keys = {group_key(v) for v in history.versions(visit_id) if v.episode is not None}
            records = [r for r in records if r.episode is not None and group_key(r) in keys]
        return _unsent(due_between(records, start, end, self.rules), history, patient_ref, now)

    def _outcome(
        self,
        visit: TherapyVisitCompleted,
        now: datetime,
        run: _Run,
        history: PatientHistory | None = None,
    ) -> Outcome:
        version = self.rules.version
        alerts = build_alerts(visit, run.findings, now, ENGINE_VERSION, version)
        checked = build_checked(visit, alerts, self.rules_evaluated, now, ENGINE_VERSION, version)
        if run.judgement is None:
            return Outcome(alerts, checked, history)
        kx = run.judgement.kx
        return Outcome(
            alerts,
            checked,
            history,
            run.judgement.status,
            len(kx.own.unknown) if kx is not None else 0,
        )

    def _status(
        self,
        subject: Subject,
        previous: StatusState | None,
        state: StatusState,
        kind: StatusCause,
        cause: tuple[str, str],
        now: datetime,
    ) -> StatusEvent:
        return build_status(
            subject, previous, state, kind, cause, now, ENGINE_VERSION, self.rules.version
        )

    def _rejudge(
        self,
        before: PatientHistory,
        after: PatientHistory,
        old: VisitRecord | None,
        new: VisitRecord,
        visit: TherapyVisitCompleted,
        now: datetime,
    ) -> tuple[PatientHistory, list[StatusEvent], list[AlertEvent]]:
        """Re-judge the other visits whose verdict the event can change; their new statuses
        (only where the set of open alert ids changed) and newly raised alerts."""
        scopes = affected(before, after, old, new, self._kx_sides, self._bills_add_on)
        if not scopes:
            return after, [], []
        changed: dict[str, VisitRecord] = {}
        statuses: list[StatusEvent] = []
        raised: list[AlertEvent] = []
        records = [after.versions(v)[-1] for v in scopes]
        records.sort(key=lambda r: (r.date_of_service, r.visit_id))
        for r in records:
            previous = r.status
            assert previous is not None
            judged, kinds = self.judge_now(r, after, visit.patient_ref, scopes[r.visit_id])
            open_now = merged(
                (a for a in previous.open if a.scope not in scopes[r.visit_id]),
                open_alerts(judged, kinds),
            )
            was = ids(previous.open)
            if ids(open_now) == was and _amounts(open_now) == _amounts(previous.open):
                continue  # its verdict did not change
            state = next_state(previous, open_now)
            changed[r.visit_id] = r.with_status(state)
            statuses.append(
                self._status(
                    Subject.of(r, visit.patient_ref),
                    previous,
                    state,
                    StatusCause.RELATED_VISIT,
                    (visit.event_id, visit.visit_id),
                    now,
                )
            )
            raised.extend(
                msgspec.structs.replace(a, body={**a.body, "detected_at": now})
                for a in judged
                if a.alert_id not in was
            )
        return after.with_current(changed), statuses, raised

    def _bills_add_on(self, record: VisitRecord) -> bool:
        catalog = self.rules.catalog
        return any(
            (e := catalog.get(ln.cpt)) is not None and bool(e.add_on_to) for ln in record.lines
        )

    def _kx_sides(self, year: int, bucket: str, cents: int) -> tuple[bool, bool] | None:
        kx = self.rules.kx
        threshold = kx.cents(year, KxBucket(bucket))
        if threshold is None:
            return None
        return sides(cents, threshold, kx.premature_share_percent)


def _unsent(
    found: list[Notice], history: PatientHistory, patient_ref: str, now: datetime
) -> tuple[list[ComplianceNotice], PatientHistory]:
    """The notices whose ids the patient's history does not hold as published, each once, and
    the history holding them."""
    out: list[ComplianceNotice] = []
    ids: list[str] = []
    for n in found:
        i = n.id_for(patient_ref)
        if i in history.sent or i in ids:
            continue
        ids.append(i)
        out.append(n.event(patient_ref, now))
    return out, history.with_sent(ids)


def _amounts(open_: tuple[OpenAlert, ...]) -> frozenset[tuple[str, str | None]]:
    """An open alert may keep its id while its amount changes (an NCCI alert's amount is the
    other visit's line): a status is published for either."""
    return frozenset((a.alert_id, a.amount_at_risk) for a in open_)


def _apply(
    rules: tuple[tuple[Rule, Scope], ...], ctx: VisitContext
) -> tuple[list[Finding], list[str]]:
    """The rules' findings in run order, without the documentation rules' consequences on a
    visit without documentation (rules/feed_parts.py), and each finding's scope."""
    findings: list[Finding] = []
    scopes: list[str] = []
    for rule, scope in rules:
        found = rule(ctx)
        if found:  # most rules find nothing: no enum `.value` (a property call) for them
            findings.extend(found)
            scopes.extend([scope.value] * len(found))
    kept = without_consequences(ctx, findings)
    if kept is findings:
        return findings, scopes
    scope_of = {id(f): s for f, s in zip(findings, scopes, strict=True)}
    return kept, [scope_of[id(f)] for f in kept]


_PARTS: tuple[Literal["charges", "documentation"], ...] = ("charges", "documentation")

#: The rules of a set of scopes, built once per set (at most 2^4 of them) instead of per
#: re-judged visit.
_rules_of = functools.cache(rules_of)

#: judge_now's alerts are built with a placeholder time; evaluate sets the real one.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _delivered(current: tuple[VisitRecord, ...], event_id: str) -> int | None:
    """The seq of the kept version with this event id; -1 when only remembered in the
    status (its version no longer kept); None for an event not seen."""
    for v in current:
        if v.event_id == event_id:
            return v.seq
    if current and (status := current[-1].status) is not None and event_id in status.seen:
        return -1
    return None


def _visit_of(record: VisitRecord, patient_ref: str) -> TherapyVisitCompleted:
    """The event as the cross-visit rules read it, rebuilt from its record (no validation: the
    record was built from a validated event). Only what those rules and the alerts read."""
    payer = record.payer
    assert payer is not None
    ep = record.episode
    return _trusted(
        TherapyVisitCompleted,
        ("total_timed_minutes", "total_treatment_minutes"),  # not read by the rules: unset
        schema_version=1,
        event_id=record.event_id,
        occurred_at=_EPOCH,  # not read by the rules
        visit_id=record.visit_id,
        patient_ref=patient_ref,
        date_of_service=record.date_of_service,
        discipline=Discipline(record.discipline),
        payer=_trusted(
            Payer,
            payer_id=payer.payer_id,
            kind=PayerKind(payer.kind),
            unit_rule=UnitRule(payer.unit_rule) if payer.unit_rule is not None else None,
        ),
        rendering_provider=_trusted(RenderingProvider, npi=record.npi, credential=Credential.OTHER),
        services=[
            _trusted(
                ServiceLine,
                line_id=ln.line_id,
                cpt=ln.cpt,
                units=ln.units,
                minutes=None,
                modifiers=list(ln.modifiers),
                furnished_by=None,
                assistant_minutes=None,
                allowed_amount=ln.allowed_amount,
            )
            for ln in (*record.lines, *record.unbilled)
        ],
        documents=[],
        episode_ref=ep.episode_ref if ep is not None else None,
        episode_start_date=ep.start if ep is not None else None,
        parts_missing=[p for p in _PARTS if p in record.parts_missing] or None,
    )


_Model = TypeVar("_Model", bound=BaseModel)


def _trusted(cls: type[_Model], unset: tuple[str, ...] = (), /, **fields: Any) -> _Model:
    """`cls.model_construct(**fields)` for `fields` naming every field of `cls` but those in
    `unset` (their defaults, outside the fields set, as model_construct leaves them): the
    instance it builds, without its walk over the fields for aliases and defaults (3.0 -> 0.9
    us a service line). For models without aliases, private attributes, post-init or extra
    fields kept (tests/unit/compliance/test_engine_alerts.py checks both build the same)."""
    m = cls.__new__(cls)
    given = set(fields)
    if unset:  # in the fields' order, as model_construct's __dict__
        fields = {
            name: fields[name] if name in given else f.get_default(call_default_factory=True)
            for name, f in cls.model_fields.items()
        }
    _set(m, "__dict__", fields)
    _set(m, "__pydantic_fields_set__", given)
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


_set = object.__setattr__
