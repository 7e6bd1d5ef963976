"""Rules of the takedowns domain after filing (filing and confirmation are in filing.py):
operators' decisions, the claimant's withdrawal, the sweeps the scheduler runs, and the
removal it carries out. Status changes go through lifecycle.py: one conditional UPDATE and
one audit row each.
"""

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import groupby
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlmodel import Session, col

from app.articles import service as articles
from app.auth import hash_secret
from app.config import Settings
from app.errors import NotFound
from app.notifications import outbox as notifications
from app.notifications.models import EmailKind
from app.scheduler import queue as removals
from app.scheduler.models import RemovalJob
from app.scheduler.queue import RemovalRefused
from app.takedowns import audit, policy
from app.takedowns.audit import Action
from app.takedowns.filing import NO_SECRET_HASH
from app.takedowns.lifecycle import (
    add_late_arrivals,
    complete,
    complete_all,
    end_without_removal,
    escalate_unconfirmed,
    locked,
    locked_all,
    move,
    move_all,
    record_breach,
    set_values,
    start_removals,
    take_effect,
)
from app.takedowns.models import (
    OPEN_STATUSES,
    RateLimitCounter,
    Takedown,
    TakedownAppeal,
    TakedownStatus,
    TakedownTarget,
    TargetState,
)
from app.takedowns.schemas import proof_of
from app.takedowns.targets import TargetView, views_of

TT = TakedownTarget.__table__  # type: ignore[attr-defined]
S = TakedownStatus
# Requests one sweep moves at most (the next tick takes the rest).
SWEEP_LIMIT = 200
# Requests an operator may still approve, reject or escalate.
DECIDABLE_STATUSES = frozenset({S.received, S.queued, S.escalated})


# Operators ---------------------------------------------------------------------------------


def approve_takedown(*, session: Session, takedown_id: str, actor: str, now: datetime) -> Takedown:
    """Approve an undecided request, whatever its proof: its removals run now and its blocks
    hold (an operator's approval is proof enough)."""
    takedown = locked(session, takedown_id)
    _approve(session, takedown, actor, now, email=EmailKind.approved)
    return takedown


def approve_on_appeal(
    *, session: Session, takedown: Takedown, actor: str, note: str | None, now: datetime
) -> None:
    """Approve a rejected request whose appeal was granted (`takedown` locked by the caller):
    what the rejection cancelled is pending again, then it is approved as any request is."""
    session.execute(
        update(TT)
        .where(TT.c.takedown_id == takedown.id, TT.c.state == TargetState.cancelled)
        .values(state=TargetState.pending)
    )
    # The rejection lifted its blocks: they are placed again when it takes effect.
    set_values(session, takedown, blocked_at=None)
    _approve(
        session,
        takedown,
        actor,
        now,
        email=EmailKind.appeal_granted,
        appealed=True,
        details={"statement_of_reasons": note},
    )


def _approve(
    session: Session,
    takedown: Takedown,
    actor: str,
    now: datetime,
    *,
    email: EmailKind,
    appealed: bool = False,
    details: Mapping[str, Any] | None = None,
) -> None:
    previous = move(
        session,
        takedown,
        action=Action.approved,
        actor=actor,
        now=now,
        allowed={S.rejected} if appealed else DECIDABLE_STATUSES,
        to=S.queued,
        undecided=not appealed,
        reason="appeal granted" if appealed else None,
        values={
            "decision": "approved",
            "decision_reason": None,
            "decided_by": actor,
            "decided_at": now,
            "run_at": now,
        },
    )
    notifications.notify_claimant(
        session=session, takedown=takedown, kind=email, now=now, details=details
    )
    if previous in (S.received, S.escalated, S.rejected):
        # Until now nothing blocked its URLs: articles may have arrived since filing.
        add_late_arrivals(session, takedown)
    start_removals(session, takedown, actor, now, now)


def reject_takedown(
    *, session: Session, takedown_id: str, actor: str, reason: str, now: datetime
) -> Takedown:
    """Reject a request before any removal, with the statement of reasons the claimant sees."""
    takedown = locked(session, takedown_id)
    move(
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
    end_without_removal(session, takedown, actor, now)
    return takedown


def escalate_takedown(
    *, session: Session, takedown_id: str, actor: str, reason: str | None, now: datetime
) -> Takedown:
    """Hold an undecided request for review: its removals wait for an operator's approval."""
    takedown = locked(session, takedown_id)
    why = reason or "escalated by an operator"
    move(
        session,
        takedown,
        action=Action.escalated,
        actor=actor,
        now=now,
        allowed={S.received, S.queued},
        to=S.escalated,
        reason=why,
        undecided=True,
        values={"escalation_reasons": [why], "run_at": None},
    )
    # An address nobody has confirmed gets no more mail than its receipt.
    if proof_of(takedown) != policy.Proof.unconfirmed:
        notifications.notify_claimant(
            session=session, takedown=takedown, kind=EmailKind.escalated, now=now
        )
    removals.schedule_removals(session=session, takedown_id=takedown.id, run_at=None, now=now)
    return takedown


def advance_waiting_requests(*, session: Session, settings: Settings, now: datetime) -> int:
    """What the clock decides, for the scheduler's tick: a request still unconfirmed when
    its review window ends goes to an operator (never removed automatically; the 24-hour
    deadline stands for the operator); a queued request whose run time has come takes effect
    (its blocks are placed), and one with nothing to remove, only URLs to block, completes.
    Returns the requests moved."""
    unconfirmed = session.scalars(
        select(Takedown)
        .where(
            col(Takedown.status) == S.received,
            col(Takedown.confirmation_hash).is_not(None),
            col(Takedown.email_confirmed_at).is_(None),
            col(Takedown.received_at) <= now - settings.takedown_review_window,
        )
        .order_by(col(Takedown.received_at))
        .limit(SWEEP_LIMIT)
        .with_for_update(skip_locked=True)
    ).all()
    for takedown in unconfirmed:
        escalate_unconfirmed(session, takedown, now)
    taking_effect = session.scalars(
        select(Takedown)
        .where(
            col(Takedown.status) == S.queued,
            col(Takedown.run_at) <= now,
            col(Takedown.blocked_at).is_(None),
        )
        .order_by(col(Takedown.run_at))
        .limit(SWEEP_LIMIT)
        .with_for_update(skip_locked=True)
    ).all()
    for takedown in taking_effect:
        take_effect(session, takedown, audit.SCHEDULER, now)
    unfinished = exists().where(
        col(RemovalJob.takedown_id) == col(Takedown.id),
        col(RemovalJob.status).in_(removals.UNFINISHED_STATUSES),
    )
    blocks_only = session.scalars(
        select(Takedown)
        .where(col(Takedown.status) == S.queued, col(Takedown.run_at) <= now, ~unfinished)
        .order_by(col(Takedown.run_at))
        .limit(SWEEP_LIMIT)
        .with_for_update(skip_locked=True)
    ).all()
    for takedown in blocks_only:
        complete(session, takedown, audit.SCHEDULER, now)
    return len(unconfirmed) + len(taking_effect) + len(blocks_only)


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
        record_breach(session, takedown, now)
    return len(overdue)


def forget_ended_rate_windows(*, session: Session, settings: Settings, now: datetime) -> int:
    """Delete the filing rate limits' counters of windows that have ended (a client that
    never files again would keep its row for ever); for the scheduler's tick."""
    rates = (
        settings.rate_per_address,
        settings.rate_per_domain,
        settings.rate_per_email,
        settings.rate_per_verification_address,
        settings.rate_per_verification_check,
    )
    longest = max(rate.period_seconds for rate in rates)
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
    expected = takedown.token_hash if takedown is not None else NO_SECRET_HASH
    if not hmac.compare_digest(hash_secret(token or ""), expected) or takedown is None:
        raise NotFound("No takedown request with this id and token.")
    return takedown


def withdraw_takedown(
    *, session: Session, takedown_id: str, token: str | None, now: datetime
) -> Takedown:
    """The claimant withdraws the request; only before any removal (409 after)."""
    get_for_claimant(session=session, takedown_id=takedown_id, token=token)
    takedown = locked(session, takedown_id)
    move(
        session,
        takedown,
        action=Action.withdrawn,
        actor=audit.CLAIMANT,
        now=now,
        allowed={S.received, S.queued, S.escalated},
        to=S.withdrawn,
        values={"run_at": None},
    )
    end_without_removal(session, takedown, audit.CLAIMANT, now)
    return takedown


# The scheduler -----------------------------------------------------------------------------


def carry_out_removals(
    *, session: Session, removals: Mapping[str, Sequence[int]], now: datetime
) -> dict[str, set[int]]:
    """Remove requests' articles (in the scheduler's transaction), {takedown id: article
    ids}; the ids removed now by request, the others were removed already. Every request
    is locked first, in the order given, and only then are articles touched: a worker never
    waits for a request while holding a publisher's row, so workers sharing requests and
    publishers cannot deadlock. One target update per request and one batch of audit rows in all.
    `RemovalRefused` when a request no longer allows removal (withdrawn, rejected,
    escalated and not approved)."""
    statuses = _statuses(session, list(removals))
    # Requests under way are shared, so several workers remove one request's articles side
    # by side; a request still queued (`start_takedowns` did not run, or lost a race) is
    # locked and moved here. Consecutive requests of one lock mode are locked by one
    # statement, all in the order given.
    takedowns: list[Takedown] = []
    for shared, run in groupby(removals, key=lambda t: statuses.get(t) != S.queued):
        takedowns.extend(locked_all(session, list(run), shared=shared))
    for takedown in takedowns:
        if takedown.status not in (S.queued, S.executing):
            raise RemovalRefused(
                f"Takedown {takedown.id} is {takedown.status}; its removals do not run."
            )
    _start(session, [takedown for takedown in takedowns if takedown.status == S.queued], now)
    removed = articles.remove_articles(session=session, removals=removals, now=now)
    _record_removals(session, removals, removed, now)
    return removed


def start_takedowns(*, session: Session, takedown_ids: Sequence[str], now: datetime) -> None:
    """Move the queued requests among these to executing (their blocks in effect), in the
    caller's short transaction: the exclusive lock this takes is then held for this move
    only, not through a batch of removals that other workers' batches would wait for."""
    statuses = _statuses(session, takedown_ids)
    queued = [takedown_id for takedown_id in takedown_ids if statuses.get(takedown_id) == S.queued]
    if queued:
        locked_now = locked_all(session, queued)
        _start(session, [takedown for takedown in locked_now if takedown.status == S.queued], now)


def _statuses(session: Session, takedown_ids: Sequence[str]) -> dict[str, str]:
    rows = session.execute(
        select(col(Takedown.id), col(Takedown.status)).where(
            col(Takedown.id).in_(list(takedown_ids))
        )
    )
    return {row.id: row.status for row in rows}


def _start(session: Session, takedowns: Sequence[Takedown], now: datetime) -> None:
    """Queued requests (locked) take effect and move to executing."""
    for takedown in takedowns:
        take_effect(session, takedown, audit.SCHEDULER, now)
    if takedowns:
        move_all(
            session,
            takedowns,
            action=Action.executing,
            actor=audit.SCHEDULER,
            now=now,
            allowed={S.queued},
            to=S.executing,
        )


def _record_removals(
    session: Session,
    removals: Mapping[str, Sequence[int]],
    removed: Mapping[str, set[int]],
    now: datetime,
) -> None:
    """Every named target of the batch is done (removed now or before); one audit row per
    article removed now."""
    # One statement per request, on the request's index (a row-value IN of (request,
    # article) pairs scanned the whole table on SQLite).
    for takedown_id, article_ids in removals.items():
        session.execute(
            update(TT)
            .where(TT.c.takedown_id == takedown_id, TT.c.article_id.in_(sorted(set(article_ids))))
            .values(state=TargetState.removed)
        )
    audit.record_all(
        session=session,
        rows=[
            {
                "actor": audit.SCHEDULER,
                "action": Action.removed,
                "takedown_id": takedown_id,
                "article_id": article_id,
            }
            for takedown_id in removals
            for article_id in sorted(removed[takedown_id])
        ],
        now=now,
    )


def carry_out_removal(
    *, session: Session, takedown_id: str, article_id: int, now: datetime
) -> bool:
    """`carry_out_removals` for one article: True when removed now, False when it was
    removed already."""
    removed = carry_out_removals(session=session, removals={takedown_id: [article_id]}, now=now)
    return article_id in removed[takedown_id]


def complete_takedowns(*, session: Session, takedown_ids: Sequence[str], now: datetime) -> None:
    """Mark requests completed once their last removal ran (a no-op for those completed
    already), locked in the order given."""
    complete_all(session, locked_all(session, takedown_ids), audit.SCHEDULER, now)


# Reads -------------------------------------------------------------------------------------


def takedown_targets(*, session: Session, takedown: Takedown) -> list[TargetView]:
    return views_of(session=session, takedown_id=takedown.id)


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
    return removals.open_removal_counts(session=session, takedown_ids=[takedown_id])[takedown_id]


# The operators' console --------------------------------------------------------------------


class QueueView(StrEnum):
    """The console's views of the requests; `open` is the queue itself (open requests and
    appeals awaiting a decision)."""

    open = "open"
    awaiting_confirmation = "awaiting_confirmation"
    review_window = "review_window"
    escalated = "escalated"
    queued = "queued"
    appealed = "appealed"
    overdue = "overdue"
    completed = "completed"
    rejected = "rejected"


@dataclass(frozen=True)
class QueueEntry:
    """A request in the queue, and its appeal while one awaits a decision: the appeal's
    deadline is then the one that counts."""

    takedown: Takedown
    appeal: TakedownAppeal | None

    @property
    def deadline(self) -> datetime:
        return self.appeal.due_at if self.appeal is not None else self.takedown.due_at


_PENDING_APPEAL = and_(
    col(TakedownAppeal.takedown_id) == col(Takedown.id), col(TakedownAppeal.decided_at).is_(None)
)


def _in_view(view: QueueView, now: datetime) -> Any:
    status = col(Takedown.status)
    appealed = col(TakedownAppeal.id).is_not(None)
    conditions = {
        QueueView.open: or_(status.in_(OPEN_STATUSES), appealed),
        QueueView.awaiting_confirmation: status == S.received,
        # Confirmed elsewhere than the targets' domain: waiting for its review window to end.
        QueueView.review_window: and_(status == S.queued, col(Takedown.run_at) > now),
        QueueView.escalated: status == S.escalated,
        QueueView.queued: status.in_([S.queued, S.executing]),
        QueueView.appealed: appealed,
        QueueView.overdue: or_(
            and_(status.in_(OPEN_STATUSES), col(Takedown.due_at) < now),
            and_(appealed, col(TakedownAppeal.due_at) < now),
        ),
        QueueView.completed: status == S.completed,
        QueueView.rejected: status == S.rejected,
    }
    return conditions[view]


def list_queue(
    *,
    session: Session,
    view: QueueView,
    after: tuple[datetime, str] | None,
    limit: int,
    now: datetime,
) -> list[QueueEntry]:
    """Requests in one of the console's views, the nearest deadline first (a pending
    appeal's deadline for an appealed request), keyset-paged on (deadline, id)."""
    query = (
        select(Takedown, TakedownAppeal)
        .outerjoin(TakedownAppeal, _PENDING_APPEAL)
        .where(_in_view(view, now))
    )
    # The deadline a request is ordered by: its pending appeal's, else its own.
    deadline = func.coalesce(col(TakedownAppeal.due_at), col(Takedown.due_at))
    if after is not None:
        after_deadline, after_id = after
        query = query.where(
            or_(
                deadline > after_deadline,
                and_(deadline == after_deadline, col(Takedown.id) > after_id),
            )
        )
    query = query.order_by(deadline, col(Takedown.id)).limit(limit)
    return [QueueEntry(takedown, appeal) for takedown, appeal in session.execute(query)]


def next_to_decide(*, session: Session, excluding: str) -> Takedown | None:
    """The undecided request with the nearest deadline other than `excluding` (the one just
    decided), for "decide and next"."""
    return session.scalars(
        select(Takedown)
        .where(
            col(Takedown.status).in_(DECIDABLE_STATUSES),
            col(Takedown.decision).is_(None),
            col(Takedown.id) != excluding,
        )
        .order_by(col(Takedown.due_at), col(Takedown.id))
        .limit(1)
    ).first()
