"""Appeals: a claimant whose request was rejected may appeal once, within 6 months of the
rejection, with a statement; an operator other than the one who rejected it decides by the
appeal's own deadline (BYLINE_APPEAL_REVIEW_DAYS): the rejection is upheld (with a statement
of reasons) or the appeal granted, and the request is then approved like any other.

Refusals: a request that is not rejected, or was appealed already: 409; the window has
closed: 410 (the right to appeal has gone, as a confirmation link's code goes at the
deadline); the operator who rejected it: 403.
"""

from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session, col

from app.config import Settings
from app.errors import Conflict, NotFound, ProblemError
from app.notifications import outbox as notifications
from app.notifications.models import EmailKind
from app.takedowns import audit, policy, service
from app.takedowns.audit import Action
from app.takedowns.lifecycle import locked, record_transition
from app.takedowns.models import AppealOutcome, Takedown, TakedownAppeal, TakedownStatus

S = TakedownStatus


class AppealWindowClosed(ProblemError):
    def __init__(self, closed_at: datetime) -> None:
        super().__init__(
            410,
            "appeal-window-closed",
            f"A rejection may be appealed for {policy.APPEAL_MONTHS} months; the window for "
            f"this one closed at {closed_at.isoformat()}.",
        )


class SameOperator(ProblemError):
    def __init__(self, actor: str) -> None:
        super().__init__(
            403,
            "appeal-same-operator",
            f"{actor} rejected this request, so another operator must decide its appeal.",
        )


def appeal_of(*, session: Session, takedown_id: str) -> TakedownAppeal | None:
    """The request's appeal, if it has one."""
    return session.scalars(
        select(TakedownAppeal).where(col(TakedownAppeal.takedown_id) == takedown_id)
    ).first()


def appeal_closes_at(takedown: Takedown) -> datetime | None:
    """Until when a rejected request may be appealed (None when it is not rejected)."""
    if takedown.status != S.rejected or takedown.decided_at is None:
        return None
    return policy.appeal_closes_at(takedown.decided_at)


def may_appeal(takedown: Takedown, appeal: TakedownAppeal | None, now: datetime) -> bool:
    """Whether the claimant may appeal now: rejected, not appealed yet, inside the window."""
    closes_at = appeal_closes_at(takedown)
    return appeal is None and closes_at is not None and now <= closes_at


def file_appeal(
    *,
    session: Session,
    takedown_id: str,
    token: str | None,
    statement: str,
    settings: Settings,
    now: datetime,
) -> TakedownAppeal:
    """The claimant (with the request's token) appeals its rejection, once: audited, and
    acknowledged by e-mail with the appeal's deadline."""
    service.get_for_claimant(session=session, takedown_id=takedown_id, token=token)
    takedown = locked(session, takedown_id)
    if appeal_of(session=session, takedown_id=takedown_id) is not None:
        raise Conflict("This request was appealed already; a request is appealed once.")
    closes_at = appeal_closes_at(takedown)
    if closes_at is None:
        raise Conflict(f"Only a rejected request can be appealed; this one is {takedown.status}.")
    if now > closes_at:
        raise AppealWindowClosed(closes_at)
    appeal = TakedownAppeal(
        takedown_id=takedown_id,
        statement=statement,
        filed_at=now,
        due_at=policy.appeal_due_at(filed_at=now, settings=settings),
        rejected_by=takedown.decided_by or audit.POLICY,
    )
    session.add(appeal)
    session.flush()
    record_transition(
        session,
        takedown,
        Action.appeal_filed,
        audit.CLAIMANT,
        now,
        reason=f"to be decided by {appeal.due_at.isoformat()}",
    )
    notifications.notify_claimant(
        session=session,
        takedown=takedown,
        kind=EmailKind.appeal_received,
        now=now,
        details={"appeal_due_at": appeal.due_at.isoformat()},
    )
    return appeal


def uphold_rejection(
    *, session: Session, takedown_id: str, actor: str, reason: str, now: datetime
) -> TakedownAppeal:
    """Decide the appeal: the rejection stands, for the reasons e-mailed to the claimant."""
    takedown, appeal = _decide(session, takedown_id, actor, AppealOutcome.upheld, reason, now)
    record_transition(session, takedown, Action.appeal_upheld, actor, now, reason=reason)
    notifications.notify_claimant(
        session=session,
        takedown=takedown,
        kind=EmailKind.appeal_upheld,
        now=now,
        details={"statement_of_reasons": reason},
    )
    return appeal


def grant_appeal(
    *, session: Session, takedown_id: str, actor: str, reason: str | None, now: datetime
) -> TakedownAppeal:
    """Decide the appeal: the request is approved after all, and carried out exactly as an
    approval is (its removals run now, its blocks are placed again)."""
    takedown, appeal = _decide(session, takedown_id, actor, AppealOutcome.granted, reason, now)
    record_transition(session, takedown, Action.appeal_granted, actor, now, reason=reason)
    service.approve_on_appeal(session=session, takedown=takedown, actor=actor, note=reason, now=now)
    return appeal


def _decide(
    session: Session,
    takedown_id: str,
    actor: str,
    outcome: AppealOutcome,
    reason: str | None,
    now: datetime,
) -> tuple[Takedown, TakedownAppeal]:
    # The audit names operators by their key's name, so "another operator" is another name:
    # two keys sharing a name count as one operator.
    takedown = locked(session, takedown_id)
    appeal = appeal_of(session=session, takedown_id=takedown_id)
    if appeal is None:
        raise NotFound(f"Request {takedown_id} has no appeal.")
    if appeal.decided_at is not None:
        raise Conflict(f"This appeal was decided already ({appeal.outcome}); decisions are final.")
    if actor == appeal.rejected_by:
        raise SameOperator(actor)
    table = TakedownAppeal.__table__  # type: ignore[attr-defined]
    values = {
        "outcome": outcome.value,
        "decision_reason": reason,
        "decided_by": actor,
        "decided_at": now,
    }
    changed = session.execute(
        update(table).where(table.c.id == appeal.id, table.c.decided_at.is_(None)).values(**values)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Another decision on this appeal came first.")
    session.refresh(appeal)
    return takedown, appeal
