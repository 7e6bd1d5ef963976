"""The outbox: what other domains record in their own transaction (`notify_claimant`,
`publish_article_changes`, `publish_articles_removed`, `publish_takedown_completed`), so that
an event and its notifications commit or roll back together, and the workers that send them
are woken when it commits (`emails.py` and `deliveries.py` are their handlers).

Webhook fan-out happens at write time: one `webhook_events` row per event and one
`webhook_deliveries` row per subscribed endpoint, each set in one executemany insert; when no
enabled endpoint subscribes to a kind, nothing at all is written for it.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from app.dialects import dialect_of
from app.jobs import wakeups
from app.jobs.models import JobStatus
from app.notifications.models import (
    ClaimantEmail,
    EmailKind,
    EventKind,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.takedowns.models import Takedown

CE = ClaimantEmail.__table__  # type: ignore[attr-defined]
EP = WebhookEndpoint.__table__  # type: ignore[attr-defined]
EV = WebhookEvent.__table__  # type: ignore[attr-defined]
D = WebhookDelivery.__table__  # type: ignore[attr-defined]
EMAIL_KIND = "email"
WEBHOOK_KIND = "webhook"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# Recording (in the transaction of the event) ----------------------------------------------


def notify_claimant(
    *,
    session: Session,
    takedown: Takedown,
    kind: EmailKind,
    now: datetime,
    token: str | None = None,
    confirmation_code: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Queue the e-mail telling the claimant about `kind`; at most one per request and kind.
    `token` and `confirmation_code` (the receipt only) make the status link and the link
    that confirms the address; both are erased once the e-mail is sent."""
    notify_claimants(
        session=session,
        kind=kind,
        now=now,
        emails=[(takedown, details or {})],
        token=token,
        confirmation_code=confirmation_code,
    )


def notify_claimants(
    *,
    session: Session,
    kind: EmailKind,
    now: datetime,
    emails: Sequence[tuple[Takedown, Mapping[str, Any]]],
    token: str | None = None,
    confirmation_code: str | None = None,
) -> None:
    """`notify_claimant` for several requests ((request, details) pairs) in one INSERT."""
    if not emails:
        return
    rows = [
        {
            "uid": str(uuid.uuid4()),
            "takedown_id": takedown.id,
            "kind": kind.value,
            "recipient": takedown.claimant_email,
            "context": {
                "takedown_id": takedown.id,
                "reason": takedown.reason,
                "domain": takedown.domain,
                "received_at": _iso(takedown.received_at),
                "due_at": _iso(takedown.due_at),
                "statement_of_reasons": (
                    takedown.decision_reason if kind == EmailKind.rejected else None
                ),
                **details,
            },
            "secret": token,
            "confirmation_code": confirmation_code,
            "status": JobStatus.queued.value,
            "attempts": 0,
            "run_at": now,
            "created_at": now,
        }
        for takedown, details in emails
    ]
    insert = dialect_of(session).insert
    session.execute(insert(CE).on_conflict_do_nothing(index_elements=["takedown_id", "kind"]), rows)
    wakeups.wake(session, EMAIL_KIND)


def notify_publisher(
    *,
    session: Session,
    verification_id: str,
    recipient: str,
    kind: EmailKind,
    now: datetime,
    details: Mapping[str, Any],
) -> None:
    """Queue the e-mail telling the address of a domain verification about `kind`. The
    caller's status change, a conditional UPDATE, is what makes it once per event."""
    session.execute(
        dialect_of(session)
        .insert(CE)
        .values(
            uid=str(uuid.uuid4()),
            verification_id=verification_id,
            kind=kind.value,
            recipient=recipient,
            context={"verification_id": verification_id, **details},
            status=JobStatus.queued.value,
            attempts=0,
            run_at=now,
            created_at=now,
        )
    )
    wakeups.wake(session, EMAIL_KIND)


@dataclass(frozen=True)
class NewEvent:
    kind: EventKind
    data: dict[str, Any]
    article_id: int | None = None
    takedown_id: str | None = None


def _subscribers(session: Session) -> dict[str, list[int]]:
    """Enabled endpoints by the event kinds they subscribe to."""
    subscribed: dict[str, list[int]] = {}
    for endpoint_id, kinds in session.execute(
        select(EP.c.id, EP.c.events).where(EP.c.disabled_at.is_(None)).order_by(EP.c.id)
    ):
        for kind in kinds:
            subscribed.setdefault(kind, []).append(endpoint_id)
    return subscribed


def publish(*, session: Session, events: Sequence[NewEvent], now: datetime) -> int:
    """Record events and their deliveries to every enabled endpoint subscribed to their kind;
    events nobody subscribes to are not written. Returns the deliveries queued."""
    if not events:
        return 0
    subscribers = _subscribers(session)
    wanted = [event for event in events if subscribers.get(event.kind)]
    if not wanted:
        return 0
    event_ids = session.scalars(
        dialect_of(session).insert(EV).returning(EV.c.id, sort_by_parameter_order=True),
        [
            {
                "uid": str(uuid.uuid4()),
                "kind": event.kind.value,
                "article_id": event.article_id,
                "takedown_id": event.takedown_id,
                "payload": event.data,
                "created_at": now,
            }
            for event in wanted
        ],
    ).all()
    deliveries = [
        {
            "endpoint_id": endpoint_id,
            "event_id": event_id,
            "article_id": event.article_id,
            "status": JobStatus.queued.value,
            "attempts": 0,
            "run_at": now,
            "created_at": now,
        }
        for event_id, event in zip(event_ids, wanted, strict=True)
        for endpoint_id in subscribers[event.kind]
    ]
    session.execute(D.insert(), deliveries)
    wakeups.wake(session, WEBHOOK_KIND)
    return len(deliveries)


def publish_article_changes(
    *, session: Session, changes: Iterable[tuple[EventKind, int, str]], now: datetime
) -> int:
    """`article.created` / `article.updated` for (kind, article id, canonical URL) triples."""
    return publish(
        session=session,
        events=[
            NewEvent(
                kind=kind,
                article_id=article_id,
                data={"id": article_id, "canonical_url": canonical_url, "updated_at": _iso(now)},
            )
            for kind, article_id, canonical_url in changes
        ],
        now=now,
    )


def publish_articles_removed(
    *, session: Session, removed: Iterable[tuple[int, str, str]], now: datetime
) -> int:
    """`article.removed` for (article id, canonical URL, takedown id) triples: frontends and
    caches purge their copy."""
    return publish(
        session=session,
        events=[
            NewEvent(
                kind=EventKind.article_removed,
                article_id=article_id,
                takedown_id=takedown_id,
                data={
                    "id": article_id,
                    "canonical_url": canonical_url,
                    "removed_at": _iso(now),
                    "takedown_id": takedown_id,
                },
            )
            for article_id, canonical_url, takedown_id in removed
        ],
        now=now,
    )


def publish_takedowns_completed(
    *, session: Session, removed: Mapping[str, Sequence[int]], now: datetime
) -> int:
    """`takedown.completed` for {request id: the articles it removed}; never the claimant."""
    return publish(
        session=session,
        events=[
            NewEvent(
                kind=EventKind.takedown_completed,
                takedown_id=takedown_id,
                data={
                    "id": takedown_id,
                    "completed_at": _iso(now),
                    "article_ids": sorted(article_ids),
                },
            )
            for takedown_id, article_ids in removed.items()
        ],
        now=now,
    )
