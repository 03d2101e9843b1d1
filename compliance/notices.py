"""ComplianceNotice v1: what falls due before an episode rule is broken (EVENTS.md
"ComplianceNotice v1"; docs/rules.md "Notices"). Pure: records and a date in, notices out.

Two sources, one judgement:
- `due_on(records, day)`: the date-driven kinds (CERTIFICATION_DUE, VERBAL_ORDER_SIGNATURE_DUE,
  RECERTIFICATION_DUE) of every episode of a patient as of a date, from the records dated on or
  before it (a document counts from its visit's date of service, as for the alerts). It reads
  nothing else, so a daily run on any later day gives the same answer for that date: the
  stream's catch-up of missed dates and `audit --as-of` agree.
- `at_visit(...)`: a checked visit's notices - the date-driven kinds as of its date of service
  (with the visits seen before it), PROGRESS_REPORT_DUE from its place in the progress-report
  period and KX_THRESHOLD_NEAR from its KX accrual (both as the alerts judge it: episodes/judge.py).

A notice's id is uuid5 of (patient, episode, kind, identity) where the identity is the
contract's (the period's first day, `due_by`, or bucket and year): the same obligation always
gives the same id, whoever notices it. "One notice per obligation" is the caller's part: it
publishes an id once (PatientHistory.sent).
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from compliance.episode_policy import EpisodePolicy
from compliance.episodes.certs import (
    certified_intervals,
    delayed_covers,
    on_file,
    referral_exception,
)
from compliance.episodes.judge import EpisodeJudgement
from compliance.episodes.segments import (
    GroupKey,
    Segment,
    by_group,
    group_key,
    order,
    segments,
)
from compliance.episodes.view import EpisodeView
from compliance.kx_thresholds import KxBucket
from compliance.policy import ResolvedPolicy
from compliance.records import (
    INITIAL_EVALUATION,
    SERVICE,
    DocKind,
    DocRecord,
    PayerRecord,
    VisitRecord,
)
from compliance.ruleset import RuleSet
from schemas.common import Discipline, PayerKind
from schemas.notice import ComplianceNotice, NoticeKind

#: Fixed namespace: notice ids are the same in every process and release.
NOTICE_NAMESPACE = uuid.UUID("a3c5e0d2-6b1f-4f7e-8c2a-91d4b7e6f013")


def notice_id(patient_ref: str, episode: str, kind: NoticeKind, identity: str) -> str:
    return str(uuid.uuid5(NOTICE_NAMESPACE, "\x1f".join((patient_ref, episode, kind, identity))))


@dataclass(frozen=True, slots=True)
class Notice:
    """One obligation falling due, as of a date (its first date when found by a range)."""

    kind: NoticeKind
    #: The episode's identity in the id: its `episode_ref`, else discipline and first day; ""
    #: for KX (per patient, not per episode).
    episode: str
    identity: str
    episode_ref: str | None
    discipline: str
    payer_id: str
    episode_start: date | None
    due_by: date | None
    due_at_treatment_day: int | None
    message: str
    observed: dict[str, object] = field(compare=False)
    as_of: date = field(compare=False)

    def id_for(self, patient_ref: str) -> str:
        return notice_id(patient_ref, self.episode, self.kind, self.identity)

    def event(self, patient_ref: str, created_at: datetime) -> ComplianceNotice:
        return ComplianceNotice(
            notice_id=self.id_for(patient_ref),
            kind=self.kind,
            patient_ref=patient_ref,
            episode_ref=self.episode_ref,
            discipline=Discipline(self.discipline),
            payer_id=self.payer_id,
            episode_start=self.episode_start,
            due_by=self.due_by,
            due_at_treatment_day=self.due_at_treatment_day,
            message=self.message,
            observed=self.observed,
            as_of=self.as_of,
            created_at=created_at,
        )


# --- the date-driven kinds ----------------------------------------------------------------------


def due_on(records: Iterable[VisitRecord], day: date, rules: RuleSet) -> list[Notice]:
    """The date-driven notices due on `day` for each episode of a patient, judged with the
    records (current versions) dated on or before it, and nothing else: a date judged late (a
    catch-up, `audit --as-of`) gives what it gave on the day, so the stream and the backfill
    agree."""
    return _Episodes.of(records).due_on(day, rules)


@dataclass(frozen=True, slots=True)
class _Episode:
    """One segment of the patient's records in `segments.order`, with what its prefixes (the
    records dated up to a date) need without a scan: the segments of the records dated up to a
    date are these, the last one cut short (segments.py splits left to right)."""

    key: tuple[str, str]
    seg: Segment
    dates: tuple[date, ...]
    #: Index of the first record carrying a discharge_summary (len: none).
    discharge_at: int
    #: (index, episode_start_date) of the records that give one.
    starts: tuple[tuple[int, date], ...]

    @classmethod
    def of(cls, key: tuple[str, str], seg: Segment) -> _Episode:
        rs = seg.records
        discharge_at = next(
            (i for i, r in enumerate(rs) if r.episode is not None and r.episode.discharged),
            len(rs),
        )
        starts = tuple(
            (i, r.episode.start)
            for i, r in enumerate(rs)
            if r.episode is not None and r.episode.start is not None
        )
        return cls(key, seg, tuple(r.date_of_service for r in rs), discharge_at, starts)

    def upto(self, day: date) -> tuple[Segment, date | None, bool] | None:
        """The segment as of `day` (its records dated up to it), its first day, and whether a
        discharge closed it; None when it has no record by then."""
        n = bisect_right(self.dates, day)
        if n == 0:
            return None
        seg = self.seg if n == len(self.dates) else Segment(self.seg.records[:n], self.seg.opened)
        given = [d for i, d in self.starts if i < n]
        first = given[-1] if given else (self.dates[0] if self.seg.opened else None)
        return seg, first, self.discharge_at < n


#: A patient's episodes: each group's key and segments (segments.by_group, segments.segments).
_Segmented = list[tuple[GroupKey, list[Segment]]]


def _segmented(records: Iterable[VisitRecord]) -> _Segmented:
    return [(key, segments(group, key)) for key, group in by_group(records).items()]


@dataclass(frozen=True, slots=True)
class _Episodes:
    """A patient's episodes, segmented once for judging many dates."""

    groups: tuple[tuple[_Episode, ...], ...]

    @classmethod
    def of(cls, records: Iterable[VisitRecord]) -> _Episodes:
        return cls.of_segments(_segmented(records))

    @classmethod
    def of_segments(cls, groups: _Segmented) -> _Episodes:
        return cls(tuple(tuple(_Episode.of(key, seg) for seg in segs) for key, segs in groups))

    def due_on(self, day: date, rules: RuleSet) -> list[Notice]:
        out: list[Notice] = []
        for episodes in self.groups:
            live = [e for e in episodes if e.dates[0] <= day]
            for i, e in enumerate(live):
                cut = e.upto(day)
                assert cut is not None
                seg, first_day, closed = cut
                if first_day is None:
                    continue  # start unseen: never guessed (as for the alerts)
                # Ended: a later episode of the group began, or discharged (only certification
                # and the verbal order's signature are still owed for the services furnished).
                ended = i < len(live) - 1 or closed
                out.extend(_episode_due(seg, first_day, day, ended, e.key, rules))
        return out


def _episode_due(
    seg: Segment,
    first_day: date,
    day: date,
    ended: bool,
    key: tuple[str, str],
    rules: RuleSet,
    view: EpisodeView | None = None,
) -> list[Notice]:
    """The date-driven notices of one episode (`seg`: its records dated up to `day`) on `day`;
    `view`, when given, is `EpisodeView.of(seg, first_day, day)` already built."""
    if not _may_be_due(seg, first_day, day, ended, rules):
        return []  # no window of the episode contains `day`: no view built
    policy = _policy(seg, rules)
    if policy is None or not policy.follows_medicare:
        return []
    if view is None:
        view = EpisodeView.of(seg, first_day, day)
    named = key[0] == "r"
    return list(_date_kinds(seg, view, first_day, day, ended, named, rules))


def _date_kinds(
    seg: Segment,
    view: EpisodeView,
    first_day: date,
    day: date,
    ended: bool,
    named: bool,
    rules: RuleSet,
) -> Iterator[Notice]:
    """The date-driven kinds of one episode as of `day` (`view`: its records dated on or
    before it)."""
    ep_policy = rules.episodes
    n = ep_policy.notices
    cert = ep_policy.certification
    base = _Base.of(seg, first_day, named)
    days = (day - first_day).days
    vdays = cert.verbal_order_days
    # CERTIFICATION_DUE (sec. 220.1.3 B, D; CY 2025 PFS referral exception).
    if n.certification_from_day <= days <= cert.within_days and not _certified(view, ep_policy):
        due = first_day + timedelta(days=cert.within_days)
        yield base.notice(
            NoticeKind.CERTIFICATION_DUE,
            due.isoformat(),
            due,
            None,
            f"Physician/NPP certification of the plan of care due by {due} (first day + "
            f"{cert.within_days}).",
            {"days_since_start": days},
            day,
        )
    # VERBAL_ORDER_SIGNATURE_DUE (sec. 220.1.3 B: "followed within 14 days by a signature").
    for verbal in sorted({c.verbal for c in view.certifications if c.verbal is not None}):
        due = verbal + timedelta(days=vdays)
        if not verbal <= day <= due:
            continue
        signed = any(
            c.signed is not None
            and c.signed <= day
            and (c.verbal == verbal or (c.verbal is None and c.signed >= verbal))
            for c in view.certifications
        )
        if not signed:
            yield base.notice(
                NoticeKind.VERBAL_ORDER_SIGNATURE_DUE,
                due.isoformat(),
                due,
                None,
                f"The verbal order of {verbal} must be signed by the physician/NPP by {due} "
                f"(order date + {vdays}).",
                {"verbal_order_date": verbal.isoformat(), "days_since_order": (day - verbal).days},
                day,
            )
    # RECERTIFICATION_DUE (sec. 220.1.3 C), open episodes only.
    if ended:
        return
    intervals = certified_intervals(view, ep_policy)
    lead = timedelta(days=n.recertification_lead_days)
    for end in sorted({i.end for i in intervals}):
        if not end - lead <= day <= end:
            continue
        after = end + timedelta(days=1)
        if not _covers(view, after, ep_policy):
            yield base.notice(
                NoticeKind.RECERTIFICATION_DUE,
                end.isoformat(),
                end,
                None,
                f"The certified interval ends {end}: a recertification of the plan of care is "
                "needed to treat after it.",
                {"certified_through": end.isoformat(), "days_left": (end - day).days},
                day,
            )


def _may_be_due(seg: Segment, first_day: date, day: date, ended: bool, rules: RuleSet) -> bool:
    """Whether a date-driven kind of the episode can be due on `day` (a cover, cheap: no view):
    its certification window, a verbal order's 14 days, or (open episodes) the lead before an
    end any certified interval can have (certs.certified_intervals: covers_through, a plan's
    plan_end, or a possible start + 89)."""
    ep = rules.episodes
    cert = ep.certification
    since_start = (day - first_day).days
    if ep.notices.certification_from_day <= since_start <= cert.within_days:
        return True
    window = timedelta(days=cert.verbal_order_days)
    cap = timedelta(days=ep.recertification.max_interval_days - 1)
    lead = timedelta(days=ep.notices.recertification_lead_days)
    if not ended and first_day + cap - lead <= day <= first_day + cap:
        return True
    for r in seg.records:
        part = r.episode
        assert part is not None
        for d in part.docs:
            if d.verbal is not None and d.verbal <= day <= d.verbal + window:
                return True
            if ended or d.kind not in (DocKind.CERTIFICATION, DocKind.PLAN_OF_CARE):
                continue
            ends = [d.covers_through, d.plan_end]
            ends.extend(
                x + cap if x is not None else None
                for x in (d.covers_from, d.plan_start, d.verbal, d.signed, d.day)
            )
            if any(e is not None and e - lead <= day <= e for e in ends):
                return True
    return False


def _certified(view: EpisodeView, policy: EpisodePolicy) -> bool:
    """CERTIFICATION_DUE's obligation met as of the view's date: a certification signed by
    then and on file (a verbal order is on file before it is signed, but it is not a signed
    certification), one signed with its delay reason, or the CY 2025 referral exception."""
    vdays = policy.certification.verbal_order_days
    return (
        any(
            c.signed is not None and c.signed <= view.day and on_file(c, view.day, vdays)
            for c in view.certifications
        )
        or any(c.delayed_certification for c in view.certifications)
        or referral_exception(view, policy) is not None
    )


def _covers(view: EpisodeView, day: date, policy: EpisodePolicy) -> bool:
    """`day` is covered as the alert will judge it then (on file on `day`: a verbal order that
    lapses unsigned before it does not cover it), with the view's documents (RECERTIFICATION_DUE
    met)."""
    at = replace(view, day=day)
    if any(i.start <= day <= i.end for i in certified_intervals(at, policy)):
        return True
    return any(
        c.delayed_certification and delayed_covers(c, at, policy) for c in view.certifications
    )


def candidate_dates(records: Sequence[VisitRecord], rules: RuleSet) -> list[tuple[date, date]]:
    """Date windows outside which `due_on` finds nothing for these records (a cover, not
    exact: the property test compares with every date judged): the certification window of
    every possible first day, every verbal order's 14 days, the recertification lead before
    every possible interval end. Lets a daily run or a range skip dates without judging them."""
    return _candidate_dates(_segmented(records), rules)


def _candidate_dates(groups: _Segmented, rules: RuleSet) -> list[tuple[date, date]]:
    """`candidate_dates` with the records' episodes already segmented (`_segmented(records)`)."""
    ep = rules.episodes
    n = ep.notices
    cap = timedelta(days=ep.recertification.max_interval_days - 1)
    lead = timedelta(days=n.recertification_lead_days)
    starts: set[date] = set()
    ends: set[date] = set()
    verbals: set[date] = set()
    # The first days an episode can have as of any date: the date of each opened segment's
    # first record (the segments of the records dated up to a date are these, the last one
    # cut short: segments.py splits left to right), and every episode_start_date given. A
    # segment neither opened nor given a start has no first day as of any date (start
    # unseen: `due_on` judges nothing of it), so its documents bring no window either.
    for _, segs in groups:
        for seg in segs:
            given = [r.episode.start for r in seg.records if r.episode and r.episode.start]
            if not seg.opened and not given:
                continue
            if seg.opened:
                starts.add(seg.records[0].date_of_service)
            starts.update(given)
            for r in seg.records:
                e = r.episode
                assert e is not None
                _document_windows(e.docs, cap, ends, verbals)
    windows = [
        (
            s + timedelta(days=n.certification_from_day),
            s + timedelta(days=ep.certification.within_days),
        )
        for s in starts
    ]
    windows.extend((s + cap - lead, s + cap) for s in starts)
    windows.extend((v, v + timedelta(days=ep.certification.verbal_order_days)) for v in verbals)
    windows.extend((e - lead, e) for e in ends)
    return _merged(windows)


def _document_windows(
    docs: Iterable[DocRecord], cap: timedelta, ends: set[date], verbals: set[date]
) -> None:
    """The interval ends and verbal order dates an episode's documents can bring due."""
    for d in docs:
        if d.kind is DocKind.CERTIFICATION:
            for s in (d.covers_from, d.verbal, d.signed, d.day):
                if s is not None:
                    ends.add(s + cap)
            if d.verbal is not None:
                verbals.add(d.verbal)
            if d.covers_through is not None:
                ends.add(d.covers_through)
        elif d.kind is DocKind.PLAN_OF_CARE:
            for s in (d.plan_start, d.sent):
                if s is not None:
                    ends.add(s + cap)
            if d.plan_end is not None:
                ends.add(d.plan_end)


def _merged(windows: list[tuple[date, date]]) -> list[tuple[date, date]]:
    out: list[tuple[date, date]] = []
    for lo, hi in sorted(windows):
        if out and lo <= out[-1][1] + timedelta(days=1):
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def due_between(
    records: Sequence[VisitRecord], start: date, end: date, rules: RuleSet
) -> list[Notice]:
    """The date-driven notices due on some date from `start` through `end`, each obligation
    once, as of the first date it is due (daily runs over these dates, in order)."""
    found: dict[tuple[str, str, str], Notice] = {}
    groups = _segmented(records)  # once, for the windows and the dates judged
    windows = _candidate_dates(groups, rules)
    if not any(lo <= end and start <= hi for lo, hi in windows):
        return []
    episodes = _Episodes.of_segments(groups)
    for lo, hi in windows:
        day = max(lo, start)
        last = min(hi, end)
        while day <= last:
            for notice in episodes.due_on(day, rules):
                found.setdefault((notice.kind, notice.episode, notice.identity), notice)
            day += timedelta(days=1)
    return list(found.values())


def due_within(
    records: Sequence[VisitRecord], day: date, days: int, rules: RuleSet
) -> dict[str, int]:
    """Obligations open on `day` (date-driven kinds) whose `due_by` is within `days` of it, by
    kind: the "due this week" gauge."""
    groups = _segmented(records)  # once, for the windows and the date judged
    if not any(lo <= day <= hi for lo, hi in _candidate_dates(groups, rules)):
        return {}
    limit = day + timedelta(days=days)
    out: dict[str, int] = {}
    for n in _Episodes.of_segments(groups).due_on(day, rules):
        if n.due_by is not None and n.due_by <= limit:
            out[n.kind.value] = out.get(n.kind.value, 0) + 1
    return out


def leaves_dates(
    record: VisitRecord,
    judgement: EpisodeJudgement | None,
    seen: Sequence[VisitRecord],
    rules: RuleSet,
) -> bool:
    """Whether a new visit cannot change the date-driven notices (`due_on`) of any date, so
    that judging the dates after it again (a late visit: streams/processor.py) finds nothing
    new. `judgement`: `judge()`'s for it, with `seen` every other current record (an event of
    a visit not stored, its seq above the history's: it is the last of its date in order).

    True when the visit has no episode part (it is in no episode), or when it has no documents
    and no episode_start_date and either
    - follows a record of its episode: it only adds a record inside it. segments.py splits a
      group only at an initial evaluation and after a discharge (either would make the visit
      the first of its segment: an initial evaluation opens one, and a record after a
      discharge does; an EHR-named episode is never split), so every date reads the same
      segments, documents and first day (a given start, else the first record's date when
      opened); where the visit is the latest record of a date's cut, its discipline
      (EpisodeView.discipline) and whether its payer follows Medicare (`_policy`) are read:
      both must be those of the records before it; or
    - is the first record of its group without opening it (no initial evaluation): as of the
      dates before the group's next record it is alone, with no first day (start unseen:
      nothing due); from then on the group's first segment is as before with the visit in
      front - not opened either (for an implicit group unless the next record is an initial
      evaluation, which starts its own segment and leaves the visit alone in one; an EHR-named
      episode's next record must not be one, it would stop being opened) - and `_policy` finds
      the next record's payer (it must have one) before reaching the visit's."""
    part = record.episode
    if part is None:
        return True
    if part.docs or part.start is not None:
        return False
    seg = judgement.segment if judgement is not None else None
    if seg is None or seg.records[-1] is not record:
        return False
    if len(seg.records) == 1:
        if seg.opened:
            return False  # it opens an episode: a first day of its own
        return _first_leaves_dates(record, seen)
    before = seg.records[:-1]
    if before[-1].discipline != record.discipline:
        return False
    mine = _record_policy(record, rules)
    theirs = _policy(Segment(before, seg.opened), rules)
    return (
        mine is not None and theirs is not None and mine.follows_medicare == theirs.follows_medicare
    )


def _first_leaves_dates(record: VisitRecord, seen: Sequence[VisitRecord]) -> bool:
    """`leaves_dates` for a visit first in its group, not opening it: by the group's next
    record in `segments.order`."""
    key = group_key(record)
    place = order(record)
    following = [
        r for r in seen if r.episode is not None and group_key(r) == key and order(r) > place
    ]
    if not following:
        return True  # alone in its group: no first day as of any date
    nxt = min(following, key=order)
    ep = nxt.episode
    assert ep is not None
    if ep.has(INITIAL_EVALUATION):
        return key[0] == "d"  # implicit: the visit alone in a segment of its own
    return nxt.payer is not None


# --- a checked visit's notices -------------------------------------------------------------


def at_visit(
    record: VisitRecord,
    judgement: EpisodeJudgement | None,
    seen: Sequence[VisitRecord],
    rules: RuleSet,
) -> list[Notice]:
    """The notices of a checked visit (`record`, judged with `judgement`; `seen`: the patient's
    other visits as they stood before it): the date-driven kinds as of its date, then
    PROGRESS_REPORT_DUE and KX_THRESHOLD_NEAR. The visit's documents are in `record`, so they
    are applied before (EVENTS.md: "A visit's documents are applied before its notices")."""
    day = record.date_of_service
    # The visit's own episodes (its discipline, or its named episode): the other episodes'
    # dates are the daily run's.
    if record.episode is None:
        own: list[VisitRecord] = []
        out: list[Notice] = []
    else:
        own = _of_group(seen, group_key(record), day)
        own.append(record)
        out = _visit_due(record, judgement, own, rules)
    if judgement is None:
        return out
    policy = _record_policy(record, rules)
    if policy is None:
        return out
    view = judgement.view
    ep = record.episode
    if (
        view is not None
        and ep is not None
        and policy.follows_medicare
        and not _discharged_before(record, own)
    ):
        notice = _progress_report(record, view, rules.episodes)
        if notice is not None:
            out.append(notice)
    if judgement.kx is not None:
        notice = _kx_near(record, judgement, policy, rules)
        if notice is not None:
            out.append(notice)
    return out


def _visit_due(
    record: VisitRecord,
    judgement: EpisodeJudgement | None,
    own: list[VisitRecord],
    rules: RuleSet,
) -> list[Notice]:
    """`due_on(own, day)` on the visit's date (`own`: its group's records dated up to it, the
    visit last), without `_Episode`'s precomputation for many dates: one date, and no record
    after it. The judgement's segment when it is the whole group, else the group segmented.
    The property test compares it with `due_on`."""
    day = record.date_of_service
    key = group_key(record)
    judged = _judged_whole(record, judgement, own)
    if judged is not None:
        return _whole_due(judged, day, key, rules)
    # Every record is dated up to `day`: each segment is whole as of it (_Episode.upto).
    segs = segments(sorted(own, key=order), key)
    out: list[Notice] = []
    for i, seg in enumerate(segs):
        first_day = seg.first_day
        if first_day is None:
            continue  # start unseen: never guessed (as for the alerts)
        ended = i < len(segs) - 1 or seg.closed
        out.extend(_episode_due(seg, first_day, day, ended, key, rules))
    return out


def _of_group(records: Iterable[VisitRecord], key: GroupKey, day: date) -> list[VisitRecord]:
    """The records of group `key` dated on or before `day` (`group_key(r) == key`, without a
    key built a record)."""
    kind, name = key
    if kind == "r":
        return [
            r
            for r in records
            if r.date_of_service <= day and r.episode is not None and r.episode.episode_ref == name
        ]
    return [
        r
        for r in records
        if r.date_of_service <= day
        and r.episode is not None
        and r.episode.episode_ref is None
        and r.discipline == name
    ]


def _judged_whole(
    record: VisitRecord, judgement: EpisodeJudgement | None, own: Sequence[VisitRecord]
) -> EpisodeJudgement | None:
    """The judgement when its segment is the whole of `own` (the visit's group as `due_on`
    reads it on the visit's date), else None. The judgement's segment is the last segment of
    the group's records before the visit in `segments.order`, the visit last, from the same
    `seen` (Engine._run): a subset of `own`. As many records means the same ones, and the
    group is that one segment: `due_on(own, day)` judges just it, with every record."""
    if judgement is None or judgement.segment is None:
        return None
    seg = judgement.segment
    if len(seg.records) != len(own) or not _same_visit(seg.records[-1], record):
        return None  # earlier episodes, or a visit of its date after it in order
    return judgement


def _same_visit(judged: VisitRecord, record: VisitRecord) -> bool:
    """`record` is the judged record but for what `due_on` does not read (Engine.evaluate
    passes the judged record with its new status)."""
    return judged is record or (
        judged.seq == record.seq
        and judged.visit_id == record.visit_id
        and judged.date_of_service == record.date_of_service
        and judged.first == record.first
        and judged.discipline == record.discipline
        and judged.episode == record.episode
        and judged.payer == record.payer
    )


def _whole_due(
    judgement: EpisodeJudgement, day: date, key: GroupKey, rules: RuleSet
) -> list[Notice]:
    """`due_on(own, day)` when the judgement's segment is the whole of `own` (_judged_whole):
    its first day and view are the judgement's (EpisodeView.of of the same segment, first day
    and date; the delayed certifications of later visits are not the date-driven kinds')."""
    seg = judgement.segment
    assert seg is not None
    view = judgement.view
    first_day = view.first_day if view is not None else seg.first_day
    if first_day is None:
        return []  # start unseen: never guessed (as for the alerts)
    if view is not None and view.delayed_certifications:
        view = replace(view, delayed_certifications=())
    return _episode_due(seg, first_day, day, seg.closed, key, rules, view)


def _discharged_before(record: VisitRecord, upto: Sequence[VisitRecord]) -> bool:
    """An EHR-named episode closed by a discharge_summary on a visit before `record` (EVENTS.md:
    "An episode closed by a discharge_summary gets no further PROGRESS_REPORT_DUE", as
    `due_on` treats RECERTIFICATION_DUE). An implicit episode ends at its discharge: the visit
    after it opens the next one (segments.py), so only named episodes can have one."""
    part = record.episode
    if part is None or part.episode_ref is None:
        return False
    key = group_key(record)
    place = order(record)
    return any(
        r is not record
        and r.episode is not None
        and r.episode.discharged
        and group_key(r) == key
        and order(r) < place
        for r in upto
    )


def _progress_report(record: VisitRecord, view: EpisodeView, ep: EpisodePolicy) -> Notice | None:
    """PROGRESS_REPORT_DUE (sec. 220.3 D): the visit is a treatment day from day 8 of its
    period and no clinician report is dated in the period (one dated on the visit's date
    covers it); not for a visit that closes the episode."""
    part = record.episode
    assert part is not None
    if not part.has(SERVICE) or part.discharged or view.reported_today:
        return None
    treatment_day = view.treatment_day_in_period()
    if treatment_day < ep.notices.progress_report_from_treatment_day:
        return None
    start = view.period_start
    due = ep.progress_report.max_treatment_days
    named = part.episode_ref is not None
    episode = _episode_key(record.discipline, view.first_day, part.episode_ref if named else None)
    payer = record.payer
    return Notice(
        NoticeKind.PROGRESS_REPORT_DUE,
        episode,
        start.isoformat(),
        part.episode_ref,
        record.discipline,
        payer.payer_id if payer is not None else "",
        view.first_day,
        None,
        due,
        f"Progress report by the clinician due by treatment day {due} of the period that "
        f"began {start}: this visit is treatment day {treatment_day}.",
        {"period_start": start.isoformat(), "treatment_day": treatment_day},
        record.date_of_service,
    )


def _kx_near(
    record: VisitRecord, judgement: EpisodeJudgement, policy: ResolvedPolicy, rules: RuleSet
) -> Notice | None:
    """KX_THRESHOLD_NEAR (Pub. 100-04, Ch. 5, sec. 10.3): the accrual, this visit included, at
    or above the share of the year's threshold and not above it (EVENTS.md: the accrual alone;
    a visit billing KX below the threshold does not meet the obligation of the visit that will
    cross it, so it gets the notice too)."""
    acc = judgement.kx
    assert acc is not None
    threshold = rules.kx.cents(acc.year, acc.bucket)
    if threshold is None or acc.own.lines == 0:
        return None
    share = policy.kx_notice_share_percent or rules.episodes.notices.kx_share_percent
    total = acc.total_cents
    if total * 100 < share * threshold or total > threshold:
        return None
    payer = record.payer
    bucket = acc.bucket.value
    return Notice(
        NoticeKind.KX_THRESHOLD_NEAR,
        "",
        f"{bucket}:{acc.year}",
        None,
        record.discipline,
        payer.payer_id if payer is not None else "",
        None,
        None,
        None,
        f"KX needed after ${_usd(threshold)} in {acc.year} ({_bucket_name(acc.bucket)}): this "
        f"patient is at ${_usd(total)}.",
        {
            "accrued": _decimal(total),
            "threshold": _decimal(threshold),
            "bucket": bucket,
            "year": acc.year,
            "share_percent": share,
        },
        record.date_of_service,
    )


# --- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Base:
    episode: str
    episode_ref: str | None
    discipline: str
    payer_id: str
    first_day: date

    @classmethod
    def of(cls, seg: Segment, first_day: date, named: bool) -> _Base:
        last = seg.records[-1]
        ep = last.episode
        ref = ep.episode_ref if named and ep is not None else None
        payer = _payer(seg)
        return cls(
            _episode_key(last.discipline, first_day, ref),
            ref,
            last.discipline,
            payer.payer_id if payer is not None else "",
            first_day,
        )

    def notice(
        self,
        kind: NoticeKind,
        identity: str,
        due_by: date | None,
        treatment_day: int | None,
        message: str,
        observed: dict[str, object],
        as_of: date,
    ) -> Notice:
        return Notice(
            kind,
            self.episode,
            identity,
            self.episode_ref,
            self.discipline,
            self.payer_id,
            self.first_day,
            due_by,
            treatment_day,
            message,
            observed,
            as_of,
        )


def _episode_key(discipline: str, first_day: date, episode_ref: str | None) -> str:
    """An episode's identity: the EHR's `episode_ref`, else (discipline, first day)."""
    return f"r:{episode_ref}" if episode_ref is not None else f"d:{discipline}:{first_day}"


def _payer(seg: Segment) -> PayerRecord | None:
    for r in reversed(seg.records):
        if r.payer is not None:
            return r.payer
    return None


def _policy(seg: Segment, rules: RuleSet) -> ResolvedPolicy | None:
    """The policy of the episode's payer as of its latest record (records from before the payer
    was kept: none, and no notice)."""
    for r in reversed(seg.records):
        if r.payer is not None:
            return _record_policy(r, rules)
    return None


def _record_policy(record: VisitRecord, rules: RuleSet) -> ResolvedPolicy | None:
    payer = record.payer
    if payer is None:
        return None
    return rules.policies.resolve_payer(
        payer.payer_id, PayerKind(payer.kind), record.date_of_service
    )


def _usd(cents: int) -> str:
    """For messages: "2,480.00"."""
    return f"{cents // 100:,}.{cents % 100:02d}"


def _decimal(cents: int) -> str:
    """For `observed`: a decimal string, USD, as the alerts write amounts ("2480.00")."""
    return f"{cents // 100}.{cents % 100:02d}"


def _bucket_name(bucket: KxBucket) -> str:
    return "PT and SLP" if bucket.value == "PT_SLP" else "OT"


__all__ = [
    "NOTICE_NAMESPACE",
    "Notice",
    "at_visit",
    "candidate_dates",
    "due_between",
    "due_on",
    "leaves_dates",
    "notice_id",
]
