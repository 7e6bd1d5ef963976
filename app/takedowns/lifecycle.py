"""How a takedown request moves, for filing, operators and the scheduler alike: every status
change is one conditional UPDATE (exactly one of two concurrent decisions wins) with its own
audit row; taking effect (blocks, removals), ending without removal, completing.

    received -> queued ---------> executing -> completed
          \\        \\-> escalated -> queued | rejected
           \\-> rejected (invalid, spam)      queued -> withdrawn (by the claimant)
                 rejected -> queued (its appeal granted: appeals.py)

`received` is where a request waits for its claimant to confirm the address.
"""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from app.articles import service as articles
from app.errors import Conflict, NotFound
from app.notifications import outbox as notifications
from app.notifications.models import EmailKind
from app.scheduler import queue as removals
from app.takedowns import audit
from app.takedowns.audit import Action
from app.takedowns.blocks import block_takedown, release_takedown_blocks
from app.takedowns.models import (
    OPEN_STATUSES,
    Takedown,
    TakedownStatus,
    TakedownTarget,
    TargetKind,
    TargetState,
)
from app.takedowns.targets import targets_of, targets_of_all, unmatched_details, views_from

TT = TakedownTarget.__table__  # type: ignore[attr-defined]
S = TakedownStatus


def record_transition(
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
    """One audit row about the request."""
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


def locked(session: Session, takedown_id: str, *, shared: bool = False) -> Takedown:
    """The request, its row locked until commit (PostgreSQL; SQLite has one writer). A shared
    lock lets removals of one request run side by side while still excluding decisions."""
    return locked_all(session, [takedown_id], shared=shared)[0]


def locked_all(
    session: Session, takedown_ids: Sequence[str], *, shared: bool = False
) -> list[Takedown]:
    """`locked` for several requests in one statement, their locks taken in the order given
    (workers sharing requests take them in one order and cannot deadlock)."""
    position = case({takedown_id: i for i, takedown_id in enumerate(takedown_ids)},
                    value=col(Takedown.id))  # fmt: skip
    takedowns = list(
        session.scalars(
            select(Takedown)
            .where(col(Takedown.id).in_(list(takedown_ids)))
            .order_by(position)
            .with_for_update(read=shared)
            .execution_options(populate_existing=True)
        )
    )
    found = {takedown.id for takedown in takedowns}
    for takedown_id in takedown_ids:
        if takedown_id not in found:
            raise NotFound(f"No takedown request with id {takedown_id}.")
    return takedowns


def move(
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
    return move_all(
        session,
        [takedown],
        action=action,
        actor=actor,
        now=now,
        allowed=allowed,
        to=to,
        reason=reason,
        undecided=undecided,
        values=values,
    )[0]


def move_all(
    session: Session,
    takedowns: Sequence[Takedown],
    *,
    action: Action,
    actor: str,
    now: datetime,
    allowed: Collection[str],
    to: str,
    reason: str | None = None,
    undecided: bool = False,
    values: dict[str, Any] | None = None,
) -> list[str]:
    """`move` for several requests in one UPDATE and one batch of audit rows: all move, or
    none (409). The statuses they left, in order."""
    previous = [takedown.status for takedown in takedowns]
    values = values or {}
    for takedown in takedowns:
        if takedown.status not in allowed:
            raise Conflict(f"A request that is {takedown.status} cannot be {action.value}.")
        if undecided and takedown.decision is not None:
            raise Conflict(f"This request was {takedown.decision} already; decisions are final.")
    table = Takedown.__table__  # type: ignore[attr-defined]
    conditions = [
        or_(*(and_(table.c.id == takedown.id, table.c.status == status)
              for takedown, status in zip(takedowns, previous, strict=True)))
    ]  # fmt: skip
    if undecided:
        conditions.append(table.c.decision.is_(None))
    session.flush()
    changed = session.execute(update(table).where(*conditions).values(status=to, **values))
    if changed.rowcount != len(takedowns):  # type: ignore[attr-defined]
        raise Conflict("Another decision on this request came first.")
    for takedown in takedowns:
        for name, value in {"status": to, **values}.items():
            set_committed_value(takedown, name, value)
    audit.record_all(
        session=session,
        rows=[
            {
                "action": action,
                "actor": actor,
                "takedown_id": takedown.id,
                "from_status": status,
                "to_status": to,
                "reason": reason,
            }
            for takedown, status in zip(takedowns, previous, strict=True)
        ],
        now=now,
    )
    for takedown, status in zip(takedowns, previous, strict=True):
        if status in OPEN_STATUSES and now > takedown.due_at and takedown.breached_at is None:
            record_breach(session, takedown, now)
    return previous


def set_values(session: Session, takedown: Takedown, **values: Any) -> None:
    """Columns other than the status, written at once (and kept on the loaded object)."""
    table = Takedown.__table__  # type: ignore[attr-defined]
    session.execute(update(table).where(table.c.id == takedown.id).values(**values))
    for name, value in values.items():
        set_committed_value(takedown, name, value)


def record_breach(session: Session, takedown: Takedown, now: datetime) -> None:
    set_values(session, takedown, breached_at=now)
    why = f"still {takedown.status} after the 24-hour deadline {takedown.due_at.isoformat()}"
    record_transition(session, takedown, Action.breached, audit.POLICY, now, reason=why)


def pending_article_ids(session: Session, takedown_id: str) -> list[int]:
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


def hold_removals(session: Session, takedown: Takedown, now: datetime) -> None:
    """Queue the request's removals without a time: they wait for an operator's approval."""
    removals.enqueue_removals(
        session=session,
        takedown_id=takedown.id,
        article_ids=pending_article_ids(session, takedown.id),
        run_at=None,
        deadline_at=takedown.due_at,
        now=now,
    )


NEVER_CONFIRMED = "the claimant did not confirm the e-mail address within the review window"
CONFIRMED_LATE = "the claimant confirmed the e-mail address only after the review window ended"


def escalate_unconfirmed(session: Session, takedown: Takedown, now: datetime) -> None:
    """A request unconfirmed when its review window ended goes to an operator: never
    removed automatically, its 24-hour deadline standing for the operator. Confirmed since
    (before the scheduler's sweep saw it), the claimant is told, as any escalation is."""
    why = NEVER_CONFIRMED if takedown.email_confirmed_at is None else CONFIRMED_LATE
    move(
        session,
        takedown,
        action=Action.escalated,
        actor=audit.POLICY,
        now=now,
        allowed={S.received},
        to=S.escalated,
        reason=why,
        values={"escalation_reasons": [why], "run_at": None},
    )
    hold_removals(session, takedown, now)
    if takedown.email_confirmed_at is not None:
        notifications.notify_claimant(
            session=session, takedown=takedown, kind=EmailKind.escalated, now=now
        )


def start_removals(
    session: Session, takedown: Takedown, actor: str, run_at: datetime, now: datetime
) -> None:
    """A queued request's articles are removed at `run_at`, and its URLs and domain blocked
    then, not before (until then an operator can still reject it, and nothing it names is
    refused): at once when that is now, otherwise by the scheduler's sweep or the first
    removal, whichever comes first. One with nothing to remove completes at `run_at`."""
    if run_at <= now:
        take_effect(session, takedown, actor, now)
    pending = pending_article_ids(session, takedown.id)
    if not pending:
        if run_at <= now:
            complete(session, takedown, actor, now)
        return
    removals.enqueue_removals(
        session=session,
        takedown_id=takedown.id,
        article_ids=pending,
        run_at=run_at,
        deadline_at=takedown.due_at,
        now=now,
    )
    removals.schedule_removals(session=session, takedown_id=takedown.id, run_at=run_at, now=now)


def take_effect(session: Session, takedown: Takedown, actor: str, now: datetime) -> None:
    """The request's removals may run now: its URLs (their matching keys) and domain go on
    the block list, and articles that arrived while it waited are queued for removal, due
    now. Once per request."""
    if takedown.blocked_at is not None:
        return
    add_late_arrivals(session, takedown)
    keys = session.scalars(
        select(TT.c.match_key).where(TT.c.takedown_id == takedown.id, TT.c.match_key.is_not(None))
    )
    block_takedown(
        session=session,
        takedown_id=takedown.id,
        match_keys=list(keys),
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
    set_values(session, takedown, blocked_at=now)
    # Rows queued already keep their run time; the late arrivals' are due now.
    removals.enqueue_removals(
        session=session,
        takedown_id=takedown.id,
        article_ids=pending_article_ids(session, takedown.id),
        run_at=now,
        deadline_at=takedown.due_at,
        now=now,
    )


def end_without_removal(session: Session, takedown: Takedown, actor: str, now: datetime) -> None:
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


def add_late_arrivals(session: Session, takedown: Takedown) -> None:
    """Articles ingested while the request had no blocks in effect (unconfirmed, or
    escalated): URL targets that matched nothing then, and new articles of the requested
    domain."""
    rows = targets_of(session=session, takedown_id=takedown.id)
    unmatched = [
        row
        for row in rows
        if row.kind == TargetKind.source_url
        and row.article_id is None
        and row.state == TargetState.pending
    ]
    found = articles.find_articles_by_match_keys(
        session=session, keys=[row.match_key for row in unmatched if row.match_key]
    )
    for row in unmatched:
        matches = found.get(row.match_key or "", [])
        if not matches:
            continue
        row.article_id, row.closest_article_id = matches[0], None
        session.add_all(
            TakedownTarget(
                takedown_id=takedown.id,
                position=row.position,
                input=row.input,
                kind=row.kind,
                canonical_url=row.canonical_url,
                match_key=row.match_key,
                article_id=article_id,
                state=TargetState.pending.value,
            )
            for article_id in matches[1:]
        )
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


def complete(session: Session, takedown: Takedown, actor: str, now: datetime) -> None:
    """The request is done: the claimant hears what it removed and what it only blocked."""
    complete_all(session, [takedown], actor, now)


def complete_all(
    session: Session, takedowns: Sequence[Takedown], actor: str, now: datetime
) -> None:
    """`complete` for several requests (locked, in the caller's order): one status UPDATE,
    one read of their targets and one batch of `takedown.completed` events."""
    moving = [takedown for takedown in takedowns if takedown.status != S.completed]
    if not moving:
        return
    move_all(
        session,
        moving,
        action=Action.completed,
        actor=actor,
        now=now,
        allowed={S.queued, S.executing},
        to=S.completed,
        values={"completed_at": now},
    )
    rows_of = targets_of_all(session=session, takedown_ids=[t.id for t in moving])
    removed_by: dict[str, list[int]] = {}
    emails: list[tuple[Takedown, dict[str, Any]]] = []
    for takedown in moving:
        rows = rows_of.get(takedown.id, [])
        removed = sorted(
            {
                row.article_id
                for row in rows
                if row.article_id is not None and row.state == TargetState.removed
            }
        )
        removed_by[takedown.id] = removed
        details = {
            "removed_articles": len(removed),
            "unmatched_targets": unmatched_details(views_from(session=session, rows=rows)),
            "completed_at": now.isoformat(),
        }
        emails.append((takedown, details))
    notifications.notify_claimants(
        session=session, kind=EmailKind.completed, now=now, emails=emails
    )
    notifications.publish_takedowns_completed(session=session, removed=removed_by, now=now)
