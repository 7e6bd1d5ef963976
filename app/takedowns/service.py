"""Rules of the takedowns domain: filing, operators' decisions, the claimant's withdrawal,
and the removal the scheduler carries out. Every status change is one conditional UPDATE
(exactly one of two concurrent decisions wins) and one audit row.

    received -> queued ---------> executing -> completed
          \\        \\-> escalated -> queued | rejected
           \\-> rejected (invalid, spam)      queued -> withdrawn (by the claimant)
"""

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, text, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from app.articles import service as articles
from app.auth import hash_secret
from app.config import TAKEDOWN_DEADLINE, Settings
from app.errors import Conflict, NotFound
from app.notifications import outbox as notifications
from app.notifications.models import EmailKind
from app.scheduler import queue as removals
from app.takedowns import audit, policy
from app.takedowns.audit import Action
from app.takedowns.blocks import block_takedown, release_takedown_blocks
from app.takedowns.models import (
    OPEN_STATUSES,
    AuditEvent,
    RateLimitCounter,
    Takedown,
    TakedownStatus,
    TakedownTarget,
    TargetKind,
    TargetState,
)
from app.takedowns.ratelimit import limit_filing
from app.takedowns.schemas import TakedownIn
from app.takedowns.targets import (
    Resolution,
    TargetView,
    resolve_targets,
    target_rows,
    target_views,
    targets_of,
)

T = Takedown.__table__  # type: ignore[attr-defined]
TT = TakedownTarget.__table__  # type: ignore[attr-defined]
S = TakedownStatus

# The same claimant naming the same things again within this window gets the first request.
DUPLICATE_WINDOW = TAKEDOWN_DEADLINE
# Namespace of the PostgreSQL advisory locks that serialise filings with one fingerprint
# (the removal queue uses 5_240_001; the migration lock uses the one-argument form).
_FILING_LOCK_NAMESPACE = 5_240_002
# Compared against when the id is unknown, so that answering takes the same work.
_NO_TOKEN_HASH = hash_secret("no such request")


# Filing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filed:
    """The outcome of a filing: the request, its secret token (None for a duplicate: the
    token was shown once, when the request was first filed) and its targets."""

    takedown: Takedown
    token: str | None
    duplicate: bool
    targets: list[TargetView]


def filing_fingerprint(*, email: str, resolution: Resolution) -> str:
    """SHA-256 of the claimant's e-mail and what the request names, however it was spelled."""
    identity = {"email": email.lower(), "targets": resolution.identity()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _serialise_filings(session: Session, fingerprint: str) -> None:
    # Two identical filings at once must not both create a request. SQLite has one writer.
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(bytes.fromhex(fingerprint)[:4], "big", signed=True)
    session.execute(
        text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
        {"namespace": _FILING_LOCK_NAMESPACE, "key": key},
    )


def find_duplicate(*, session: Session, fingerprint: str, now: datetime) -> Takedown | None:
    """A request with this fingerprint filed in the last 24 hours and not withdrawn."""
    return session.scalars(
        select(Takedown)
        .where(
            col(Takedown.fingerprint) == fingerprint,
            col(Takedown.received_at) > now - DUPLICATE_WINDOW,
            col(Takedown.status) != S.withdrawn,
        )
        .order_by(col(Takedown.received_at).desc())
        .limit(1)
    ).first()


def file_takedown(
    *,
    session: Session,
    filing: TakedownIn,
    client_address: str,
    settings: Settings,
    now: datetime,
) -> Filed:
    """File a request: resolve its targets, count it against the rate limits, and let policy
    queue its removals and blocks or escalate it; a duplicate answers the existing request.

    Order matters: targets are resolved (422) before the attempt is counted, and a 429 is
    raised before anything else is written, so the caller's rollback leaves no trace."""
    resolution = resolve_targets(
        session=session,
        targets=filing.targets,
        domain=filing.domain,
        public_base_url=settings.public_base_url,
    )
    claimant = filing.claimant
    limit_filing(
        session=session,
        client_address=client_address,
        email=claimant.email,
        per_address=settings.rate_per_address,
        per_email=settings.rate_per_email,
        now=now,
    )
    fingerprint = filing_fingerprint(email=claimant.email, resolution=resolution)
    _serialise_filings(session, fingerprint)
    existing = find_duplicate(session=session, fingerprint=fingerprint, now=now)
    if existing is not None:
        return Filed(existing, None, True, takedown_targets(session=session, takedown=existing))
    decision = policy.decide(
        claimant_email=claimant.email,
        articles=resolution.live_facts,
        domain=filing.domain,
        original_published_at=filing.original_published_at,
        received_at=now,
        settings=settings,
    )
    token = secrets.token_urlsafe(32)
    takedown = Takedown(
        id=str(uuid.uuid4()),
        status=S.received,
        reason=filing.reason,
        claimant_name=claimant.name,
        claimant_email=claimant.email,
        claimant_organization=claimant.organization,
        claimant_role=claimant.role,
        claimant_acting_for=claimant.acting_for,
        explanation=filing.explanation,
        signature=filing.signature,
        domain=filing.domain,
        original_url=filing.original_url,
        original_published_at=filing.original_published_at,
        token_hash=hash_secret(token),
        fingerprint=fingerprint,
        received_at=now,
        due_at=policy.due_at(now),
        run_at=decision.run_at,
        escalation_reason=decision.escalation,
    )
    session.add(takedown)
    session.flush()
    session.add_all(target_rows(takedown_id=takedown.id, resolution=resolution))
    _audit(session, takedown, Action.filed, audit.CLAIMANT, now, to_status=S.received)
    # Before the decision's own e-mails (a request with nothing to remove completes at once).
    notifications.notify_claimant(
        session=session,
        takedown=takedown,
        kind=EmailKind.receipt,
        now=now,
        token=token,
        details={
            "escalated": decision.escalated,
            "verified": decision.verified,
            "runs_at": decision.run_at.isoformat() if decision.run_at else None,
        },
    )
    if decision.escalated:
        _move(
            session,
            takedown,
            action=Action.escalated,
            actor=audit.POLICY,
            now=now,
            allowed={S.received},
            to=S.escalated,
            reason=decision.escalation,
        )
        removals.enqueue_removals(
            session=session,
            takedown_id=takedown.id,
            article_ids=_pending_article_ids(session, takedown.id),
            run_at=None,
            deadline_at=takedown.due_at,
            now=now,
        )
    else:
        assert decision.run_at is not None
        why = (
            "the claimant's e-mail domain matches every target: removal runs at once"
            if decision.verified
            else f"removal runs after the review window, at {decision.run_at.isoformat()}"
        )
        _move(
            session,
            takedown,
            action=Action.queued,
            actor=audit.POLICY,
            now=now,
            allowed={S.received},
            to=S.queued,
            reason=why,
        )
        _start_removals(session, takedown, audit.POLICY, decision.run_at, now)
    return Filed(takedown, token, False, takedown_targets(session=session, takedown=takedown))


# Status changes ----------------------------------------------------------------------------


def _audit(
    session: Session,
    takedown: Takedown,
    action: Action,
    actor: str,
    now: datetime,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
) -> None:
    audit.record(
        session=session,
        action=action,
        actor=actor,
        now=now,
        takedown_id=takedown.id,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
    )


def _locked(session: Session, takedown_id: str, *, shared: bool = False) -> Takedown:
    """The request, its row locked until commit (PostgreSQL; SQLite has one writer). A shared
    lock lets removals of one request run side by side while still excluding decisions."""
    takedown = session.scalars(
        select(Takedown)
        .where(col(Takedown.id) == takedown_id)
        .with_for_update(read=shared)
        .execution_options(populate_existing=True)
    ).first()
    if takedown is None:
        raise NotFound(f"No takedown request with id {takedown_id}.")
    return takedown


def _move(
    session: Session,
    takedown: Takedown,
    *,
    action: Action,
    actor: str,
    now: datetime,
    allowed: Collection[str],
    to: str,
    reason: str | None = None,
    undecided: bool = False,
    values: dict[str, Any] | None = None,
) -> str:
    """Change the status with a conditional UPDATE (the loser of a race changes nothing and
    gets 409), audit it, and record an SLA breach if the request was still open past due_at.
    Returns the status it left."""
    previous = takedown.status
    values = values or {}
    if previous not in allowed:
        raise Conflict(f"A request that is {previous} cannot be {action.value}.")
    if undecided and takedown.decision is not None:
        raise Conflict(f"This request was {takedown.decision} already; decisions are final.")
    conditions = [T.c.id == takedown.id, T.c.status == previous]
    if undecided:
        conditions.append(T.c.decision.is_(None))
    session.flush()
    changed = session.execute(update(T).where(*conditions).values(status=to, **values))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Another decision on this request came first.")
    for name, value in {"status": to, **values}.items():
        set_committed_value(takedown, name, value)
    _audit(session, takedown, action, actor, now, from_status=previous, to_status=to, reason=reason)
    if previous in OPEN_STATUSES and now > takedown.due_at and takedown.breached_at is None:
        _record_breach(session, takedown, now)
    return previous


def _record_breach(session: Session, takedown: Takedown, now: datetime) -> None:
    session.execute(update(T).where(T.c.id == takedown.id).values(breached_at=now))
    set_committed_value(takedown, "breached_at", now)
    why = f"still {takedown.status} after the 24-hour deadline {takedown.due_at.isoformat()}"
    _audit(session, takedown, Action.breached, audit.POLICY, now, reason=why)


def _pending_article_ids(session: Session, takedown_id: str) -> list[int]:
    return sorted(
        set(
            session.scalars(
                select(TT.c.article_id).where(
                    TT.c.takedown_id == takedown_id,
                    TT.c.article_id.is_not(None),
                    TT.c.state == TargetState.pending,
                )
            )
        )
    )


def _start_removals(
    session: Session, takedown: Takedown, actor: str, run_at: datetime, now: datetime
) -> None:
    """A queued request takes effect: its URLs and domain are blocked, its articles' removals
    run at `run_at`, and a request with nothing left to remove is completed at once."""
    urls = session.scalars(
        select(TT.c.canonical_url).where(
            TT.c.takedown_id == takedown.id, TT.c.canonical_url.is_not(None)
        )
    )
    block_takedown(
        session=session,
        takedown_id=takedown.id,
        urls=list(urls),
        domain=takedown.domain,
        actor=actor,
        now=now,
    )
    session.execute(
        update(TT)
        .where(
            TT.c.takedown_id == takedown.id,
            TT.c.article_id.is_(None),
            TT.c.state == TargetState.pending,
        )
        .values(state=TargetState.blocked)
    )
    pending = _pending_article_ids(session, takedown.id)
    if not pending:
        _complete(session, takedown, actor, now)
        return
    removals.enqueue_removals(
        session=session,
        takedown_id=takedown.id,
        article_ids=pending,
        run_at=run_at,
        deadline_at=takedown.due_at,
        now=now,
    )
    removals.schedule_removals(session=session, takedown_id=takedown.id, run_at=run_at)


def _end_without_removal(session: Session, takedown: Takedown, actor: str, now: datetime) -> None:
    """Withdrawn or rejected: queued removals are cancelled and the request's blocks go."""
    removals.cancel_removals(session=session, takedown_id=takedown.id, now=now)
    session.execute(
        update(TT)
        .where(
            TT.c.takedown_id == takedown.id,
            TT.c.state.in_([TargetState.pending, TargetState.blocked]),
        )
        .values(state=TargetState.cancelled)
    )
    release_takedown_blocks(session=session, takedown_id=takedown.id, actor=actor, now=now)


def _add_late_arrivals(session: Session, takedown: Takedown) -> None:
    """Articles ingested while an escalated request had no blocks in effect: URL targets that
    matched nothing then, and new articles of the requested domain."""
    rows = targets_of(session=session, takedown_id=takedown.id)
    unmatched = [
        row
        for row in rows
        if row.kind == TargetKind.source_url
        and row.article_id is None
        and row.state == TargetState.pending
    ]
    found = articles.find_articles_by_canonical_urls(
        session=session,
        canonical_urls=[row.canonical_url for row in unmatched if row.canonical_url],
    )
    for row in unmatched:
        row.article_id = found.get(row.canonical_url or "")
    if takedown.domain is not None:
        known = {row.article_id for row in rows if row.kind == TargetKind.domain}
        template = next(row for row in rows if row.kind == TargetKind.domain)
        for article_id in articles.find_live_article_ids_in_domain(
            session=session, domain=takedown.domain
        ):
            if article_id not in known:
                session.add(
                    TakedownTarget(
                        takedown_id=takedown.id,
                        position=template.position,
                        input=template.input,
                        kind=TargetKind.domain.value,
                        article_id=article_id,
                        state=TargetState.pending.value,
                    )
                )
    session.flush()


def _complete(session: Session, takedown: Takedown, actor: str, now: datetime) -> None:
    if takedown.status == S.completed:
        return
    _move(
        session,
        takedown,
        action=Action.completed,
        actor=actor,
        now=now,
        allowed={S.queued, S.executing},
        to=S.completed,
        values={"completed_at": now},
    )
    removed = sorted(
        set(
            session.scalars(
                select(TT.c.article_id).where(
                    TT.c.takedown_id == takedown.id,
                    TT.c.article_id.is_not(None),
                    TT.c.state == TargetState.removed,
                )
            )
        )
    )
    notifications.notify_claimant(
        session=session,
        takedown=takedown,
        kind=EmailKind.completed,
        now=now,
        details={"removed_articles": len(removed), "completed_at": now.isoformat()},
    )
    notifications.publish_takedown_completed(
        session=session, takedown_id=takedown.id, article_ids=removed, now=now
    )


# Operators ---------------------------------------------------------------------------------


def approve_takedown(*, session: Session, takedown_id: str, actor: str, now: datetime) -> Takedown:
    """Approve a queued or escalated request: its removals run now and its blocks hold."""
    takedown = _locked(session, takedown_id)
    previous = _move(
        session,
        takedown,
        action=Action.approved,
        actor=actor,
        now=now,
        allowed={S.received, S.queued, S.escalated},
        to=S.queued,
        undecided=True,
        values={"decision": "approved", "decided_by": actor, "decided_at": now, "run_at": now},
    )
    notifications.notify_claimant(
        session=session, takedown=takedown, kind=EmailKind.approved, now=now
    )
    if previous == S.escalated:
        _add_late_arrivals(session, takedown)
    _start_removals(session, takedown, actor, now, now)
    return takedown


def reject_takedown(
    *, session: Session, takedown_id: str, actor: str, reason: str, now: datetime
) -> Takedown:
    """Reject a request before any removal, with the statement of reasons the claimant sees."""
    takedown = _locked(session, takedown_id)
    _move(
        session,
        takedown,
        action=Action.rejected,
        actor=actor,
        now=now,
        allowed={S.received, S.queued, S.escalated},
        to=S.rejected,
        reason=reason,
        undecided=True,
        values={
            "decision": "rejected",
            "decision_reason": reason,
            "decided_by": actor,
            "decided_at": now,
            "run_at": None,
        },
    )
    notifications.notify_claimant(
        session=session, takedown=takedown, kind=EmailKind.rejected, now=now
    )
    _end_without_removal(session, takedown, actor, now)
    return takedown


def escalate_takedown(
    *, session: Session, takedown_id: str, actor: str, reason: str | None, now: datetime
) -> Takedown:
    """Hold an undecided request for review: its removals wait for an operator's approval."""
    takedown = _locked(session, takedown_id)
    why = reason or "escalated by an operator"
    _move(
        session,
        takedown,
        action=Action.escalated,
        actor=actor,
        now=now,
        allowed={S.received, S.queued},
        to=S.escalated,
        reason=why,
        undecided=True,
        values={"escalation_reason": why, "run_at": None},
    )
    notifications.notify_claimant(
        session=session, takedown=takedown, kind=EmailKind.escalated, now=now
    )
    removals.schedule_removals(session=session, takedown_id=takedown.id, run_at=None)
    return takedown


def record_sla_breaches(*, session: Session, now: datetime) -> int:
    """Record (once, audited) every open request past its due_at: an unanswered escalation
    is a breach on the record, never a silent deletion. For the scheduler's tick."""
    overdue = session.scalars(
        select(Takedown)
        .where(
            col(Takedown.status).in_(OPEN_STATUSES),
            col(Takedown.due_at) < now,
            col(Takedown.breached_at).is_(None),
        )
        .order_by(col(Takedown.due_at))
        .with_for_update(skip_locked=True)
    ).all()
    for takedown in overdue:
        _record_breach(session, takedown, now)
    return len(overdue)


def forget_ended_rate_windows(*, session: Session, settings: Settings, now: datetime) -> int:
    """Delete the filing rate limits' counters of windows that have ended (a client that
    never files again would keep its row for ever); for the scheduler's tick."""
    longest = max(settings.rate_per_address.period_seconds, settings.rate_per_email.period_seconds)
    ended = session.execute(
        delete(RateLimitCounter).where(
            col(RateLimitCounter.window_start) <= now - timedelta(seconds=longest)
        )
    )
    return int(ended.rowcount)  # type: ignore[attr-defined]


# The claimant ------------------------------------------------------------------------------


def get_for_claimant(*, session: Session, takedown_id: str, token: str | None) -> Takedown:
    """The request if the token is its own. Unknown id, wrong or missing token: the same 404."""
    takedown = session.get(Takedown, takedown_id) if len(takedown_id) <= 36 else None
    expected = takedown.token_hash if takedown is not None else _NO_TOKEN_HASH
    if not hmac.compare_digest(hash_secret(token or ""), expected) or takedown is None:
        raise NotFound("No takedown request with this id and token.")
    return takedown


def withdraw_takedown(
    *, session: Session, takedown_id: str, token: str | None, now: datetime
) -> Takedown:
    """The claimant withdraws the request; only before any removal (409 after)."""
    get_for_claimant(session=session, takedown_id=takedown_id, token=token)
    takedown = _locked(session, takedown_id)
    _move(
        session,
        takedown,
        action=Action.withdrawn,
        actor=audit.CLAIMANT,
        now=now,
        allowed={S.received, S.queued, S.escalated},
        to=S.withdrawn,
        values={"run_at": None},
    )
    _end_without_removal(session, takedown, audit.CLAIMANT, now)
    return takedown


# The scheduler -----------------------------------------------------------------------------


def carry_out_removals(
    *, session: Session, removals: Mapping[str, Sequence[int]], now: datetime
) -> dict[str, set[int]]:
    """Remove requests' articles (in the scheduler's transaction), {takedown id: article
    ids}; the ids removed now by request, the others were removed already. Every request
    is locked first, in the order given, and only then are articles touched: a runner never
    waits for a request while holding a publisher's row, so runners sharing requests and
    publishers cannot deadlock. One target update and one batch of audit rows per request.
    409 when a request no longer allows removal (withdrawn, rejected, escalated and not
    approved)."""
    for takedown_id in removals:
        _lock_for_removal(session, takedown_id, now)
    removed = articles.remove_articles(session=session, removals=removals, now=now)
    for takedown_id, article_ids in removals.items():
        _record_removals(session, takedown_id, article_ids, removed[takedown_id], now)
    return removed


def _lock_for_removal(session: Session, takedown_id: str, now: datetime) -> None:
    status = session.scalar(select(col(Takedown.status)).where(col(Takedown.id) == takedown_id))
    # Only the first removal moves the request (exclusive lock); the rest share the row, so
    # several workers remove one request's articles in parallel.
    takedown = _locked(session, takedown_id, shared=status != S.queued)
    if takedown.status == S.queued:
        _move(
            session,
            takedown,
            action=Action.executing,
            actor=audit.SCHEDULER,
            now=now,
            allowed={S.queued},
            to=S.executing,
        )
    elif takedown.status != S.executing:
        raise Conflict(f"Takedown {takedown_id} is {takedown.status}; its removals do not run.")


def _record_removals(
    session: Session,
    takedown_id: str,
    article_ids: Sequence[int],
    removed: set[int],
    now: datetime,
) -> None:
    session.execute(
        update(TT)
        .where(TT.c.takedown_id == takedown_id, TT.c.article_id.in_(sorted(set(article_ids))))
        .values(state=TargetState.removed)
    )
    if removed:
        # One multi-row INSERT: the ORM would flush them one statement each.
        session.execute(
            insert(AuditEvent),
            [
                {
                    "at": now,
                    "actor": audit.SCHEDULER,
                    "action": Action.removed.value,
                    "takedown_id": takedown_id,
                    "article_id": article_id,
                }
                for article_id in sorted(removed)
            ],
        )


def carry_out_removal(
    *, session: Session, takedown_id: str, article_id: int, now: datetime
) -> bool:
    """`carry_out_removals` for one article: True when removed now, False when it was
    removed already."""
    removed = carry_out_removals(session=session, removals={takedown_id: [article_id]}, now=now)
    return article_id in removed[takedown_id]


def complete_takedown(*, session: Session, takedown_id: str, now: datetime) -> None:
    """Mark a request completed once its last removal ran (a no-op when it is already)."""
    _complete(session, _locked(session, takedown_id), audit.SCHEDULER, now)


# Reads -------------------------------------------------------------------------------------


def takedown_targets(*, session: Session, takedown: Takedown) -> list[TargetView]:
    return target_views(targets_of(session=session, takedown_id=takedown.id))


def get_takedown(*, session: Session, takedown_id: str) -> Takedown:
    takedown = session.get(Takedown, takedown_id) if len(takedown_id) <= 36 else None
    if takedown is None:
        raise NotFound(f"No takedown request with id {takedown_id}.")
    return takedown


def is_overdue(takedown: Takedown, now: datetime) -> bool:
    return takedown.status in OPEN_STATUSES and takedown.due_at < now


def list_takedowns(
    *,
    session: Session,
    status: TakedownStatus | None,
    reason: str | None,
    overdue: bool | None,
    after: tuple[datetime, str] | None,
    limit: int,
    now: datetime,
) -> list[Takedown]:
    """Requests oldest first (the most urgent on top), keyset-paged on (received_at, id)."""
    query = select(Takedown)
    if status is not None:
        query = query.where(col(Takedown.status) == status)
    if reason is not None:
        query = query.where(col(Takedown.reason) == reason)
    if overdue is not None:
        late = and_(col(Takedown.status).in_(OPEN_STATUSES), col(Takedown.due_at) < now)
        query = query.where(late if overdue else ~late)
    if after is not None:
        received_at, takedown_id = after
        query = query.where(
            or_(
                col(Takedown.received_at) > received_at,
                and_(col(Takedown.received_at) == received_at, col(Takedown.id) > takedown_id),
            )
        )
    query = query.order_by(col(Takedown.received_at), col(Takedown.id)).limit(limit)
    return list(session.scalars(query))


def open_removals(*, session: Session, takedown_id: str) -> int:
    return removals.open_removal_count(session=session, takedown_id=takedown_id)
