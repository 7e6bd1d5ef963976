"""Public transparency figures: how the 24-hour promise is kept. Counts and durations only,
never a claimant's data.

Definitions (the figures are only as good as these are plain):

- The period is every request, or those *received* in one UTC calendar month.
- `completed`, `rejected`, `withdrawn` are requests in that status now; `open` are the rest
  (received, queued, escalated, executing); `escalated` counts requests ever escalated to an
  operator (now escalated, or with an `escalated` audit row), whatever became of them.
- Of the completed, `removed_content` removed at least one article (it has a `removed`
  audit row of its own); `removed_nothing` did not: what they named matched no article we
  held, or was gone already, so they only blocked addresses. They complete in no time, and
  counting them would make removals look faster than they are.
- Time to removal is `completed_at - received_at` of the requests that removed content, and
  of no others. The median averages the two middle values of an even count; p95 is the
  nearest rank (the ceil(0.95 n)-th smallest value).
- `share_within_24h`: requests that removed content and finished by their `due_at`,
  divided by those requests plus open requests already past `due_at` (requests whose 24
  hours are decided).
- A breach is a request not done by its `due_at`: completed after it, still open after it
  (an unanswered escalation included), rejected after it, or flagged `breached_at` when it
  was first found overdue.
"""

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import exists, or_, select
from sqlmodel import Session

from app.takedowns.audit import Action
from app.takedowns.models import OPEN_STATUSES, AuditEvent, Reason, Takedown, TakedownStatus

T = Takedown.__table__  # type: ignore[attr-defined]
A = AuditEvent.__table__  # type: ignore[attr-defined]


class Period(BaseModel):
    month: str | None = Field(description="YYYY-MM, or null for all time.")
    received_from: datetime | None
    received_before: datetime | None


class Outcomes(BaseModel):
    received: int
    completed: int
    removed_content: int = Field(description="Of completed: removed at least one article.")
    removed_nothing: int = Field(
        description="Of completed: matched no article we held (only blocked addresses)."
    )
    rejected: int
    withdrawn: int
    escalated: int = Field(description="Ever escalated to an operator, whatever the outcome.")
    open: int


class ReasonOutcomes(Outcomes):
    reason: Reason


class TimeToRemoval(BaseModel):
    requests: int = Field(
        description="Completed requests that removed content: the durations are theirs only."
    )
    median_seconds: float | None
    p95_seconds: float | None = Field(description="Nearest rank.")


class Breaches(BaseModel):
    total: int = Field(description="Requests not done by their due time (24 h after receipt).")
    completed_late: int
    open_past_due: int
    escalations_unanswered: int = Field(description="Of open_past_due: waiting for an operator.")
    answered_late: int = Field(description="Rejected or closed after their due time.")


class TransparencyReport(BaseModel):
    """How requests were answered, and how fast."""

    generated_at: datetime
    period: Period
    totals: Outcomes
    by_reason: list[ReasonOutcomes]
    time_to_removal: TimeToRemoval
    share_within_24h: float | None = Field(
        description="Requests that removed content by their due time / (those + open past "
        "due); null when none."
    )
    breaches: Breaches


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """`2026-01` -> [2026-01-01T00:00Z, 2026-02-01T00:00Z). Raises ValueError when invalid."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    if start.month < 12:
        return start, start.replace(month=start.month + 1)
    if start.year < MAXYEAR:
        return start, start.replace(year=start.year + 1, month=1)
    return start, datetime.max.replace(tzinfo=UTC)  # December 9999: up to the last instant


@dataclass(frozen=True)
class _Request:
    status: str
    reason: str
    received_at: datetime
    due_at: datetime
    completed_at: datetime | None
    decided_at: datetime | None
    breached_at: datetime | None
    escalated: bool
    removed_content: bool


def _outcomes(requests: list[_Request]) -> dict[str, int]:
    statuses = Counter(r.status for r in requests)
    completed = [r for r in requests if r.status == TakedownStatus.completed.value]
    return {
        "received": len(requests),
        "completed": len(completed),
        "removed_content": sum(r.removed_content for r in completed),
        "removed_nothing": sum(not r.removed_content for r in completed),
        "rejected": statuses[TakedownStatus.rejected.value],
        "withdrawn": statuses[TakedownStatus.withdrawn.value],
        "escalated": sum(r.escalated for r in requests),
        "open": sum(statuses[s] for s in OPEN_STATUSES),
    }


def nearest_rank(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[max(math.ceil(fraction * len(sorted_values)), 1) - 1]


def transparency_report(
    *, session: Session, now: datetime, month: str | None = None
) -> TransparencyReport:
    """The public figures for all time or for requests received in `month` (YYYY-MM)."""
    start = end = None
    query = select(
        T.c.status,
        T.c.reason,
        T.c.received_at,
        T.c.due_at,
        T.c.completed_at,
        T.c.decided_at,
        T.c.breached_at,
        or_(
            T.c.status == TakedownStatus.escalated.value,
            exists().where(A.c.takedown_id == T.c.id, A.c.action == Action.escalated.value),
        ).label("escalated"),
        exists()
        .where(A.c.takedown_id == T.c.id, A.c.action == Action.removed.value)
        .label("removed_content"),
    )
    if month is not None:
        start, end = month_bounds(month)
        query = query.where(T.c.received_at >= start, T.c.received_at < end)
    requests = [_Request(**row._mapping) for row in session.execute(query)]

    completed = [r for r in requests if r.status == TakedownStatus.completed.value]
    removals = [r for r in completed if r.removed_content]
    durations = sorted(
        (r.completed_at - r.received_at).total_seconds() for r in removals if r.completed_at
    )
    on_time = sum(1 for r in removals if r.completed_at and r.completed_at <= r.due_at)
    completed_late = sum(1 for r in completed if r.completed_at and r.completed_at > r.due_at)
    open_past_due = [r for r in requests if r.status in OPEN_STATUSES and r.due_at < now]
    answered_late = [
        r
        for r in requests
        if r.status in (TakedownStatus.rejected.value, TakedownStatus.withdrawn.value)
        and (r.breached_at is not None or (r.decided_at is not None and r.decided_at > r.due_at))
    ]
    decided = len(removals) + len(open_past_due)
    return TransparencyReport(
        generated_at=now,
        period=Period(month=month, received_from=start, received_before=end),
        totals=Outcomes(**_outcomes(requests)),
        by_reason=[
            ReasonOutcomes(reason=reason, **_outcomes([r for r in requests if r.reason == reason]))
            for reason in Reason
        ],
        time_to_removal=TimeToRemoval(
            requests=len(durations),
            median_seconds=statistics.median(durations) if durations else None,
            p95_seconds=nearest_rank(durations, 0.95) if durations else None,
        ),
        share_within_24h=on_time / decided if decided else None,
        breaches=Breaches(
            total=completed_late + len(open_past_due) + len(answered_late),
            completed_late=completed_late,
            open_past_due=len(open_past_due),
            escalations_unanswered=sum(
                1 for r in open_past_due if r.status == TakedownStatus.escalated.value
            ),
            answered_late=len(answered_late),
        ),
    )
