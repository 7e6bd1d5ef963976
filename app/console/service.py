"""What the console reads and decides beyond the takedowns' own services: our copy of each
target's articles, a request's history, and decisions on many requests at once."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from app import auth
from app.articles import service as articles
from app.articles.service import ArticleRemoved
from app.auth import ApiKey
from app.auth_routes import ApiKeyCreate
from app.console.sessions import Operator
from app.errors import Conflict, NotFound
from app.notifications import webhooks
from app.notifications.models import WebhookEndpoint
from app.takedowns import audit, service
from app.takedowns.models import AuditEvent, Takedown
from app.takedowns.targets import TargetView

# Articles shown per target (a whole-domain target may name thousands).
COPIES_PER_TARGET = 20
HISTORY_LIMIT = 500


@dataclass(frozen=True)
class RejectionTemplate:
    """The first sentence of a statement of reasons; the operator adds the particulars."""

    label: str
    text: str


REJECTION_TEMPLATES = {
    "not_rights_holder": RejectionTemplate(
        "Not the rights holder",
        "We could not establish that you own the rights to this content or act for the "
        "person who does.",
    ),
    "licensed": RejectionTemplate(
        "Licensed to us",
        "We republish this content under a licence or permission from its rights holder, "
        "which your request does not show to have ended.",
    ),
    "earlier_copy": RejectionTemplate(
        "Our copy is older than the claimed original",
        "We first published this content before the date you give for your original, so we "
        "could not establish that it is yours.",
    ),
    "unidentified": RejectionTemplate(
        "Content not identified",
        "The request does not identify the content precisely enough for us to find it.",
    ),
    "public_interest": RejectionTemplate(
        "Lawful reporting",
        "The content is lawful reporting in the public interest, and your request does not "
        "show that it infringes your rights.",
    ),
}


@dataclass(frozen=True)
class OurCopy:
    """Our article a target resolved to; a removed one keeps only its tombstone's facts."""

    article_id: int
    url: str
    first_seen_at: datetime
    title: str | None = None
    publisher: str | None = None
    removed_at: datetime | None = None


@dataclass(frozen=True)
class TargetWithCopies:
    target: TargetView
    copies: list[OurCopy]
    more: int


def targets_with_copies(*, session: Session, takedown: Takedown) -> list[TargetWithCopies]:
    """Each target of the request beside our copies of what it names."""
    views = service.takedown_targets(session=session, takedown=takedown)
    shown = {view.input: view.article_ids[:COPIES_PER_TARGET] for view in views}
    facts = articles.article_facts(
        session=session, article_ids=[i for ids in shown.values() for i in ids]
    )
    result = []
    for view in views:
        copies = []
        for article_id in shown[view.input]:
            fact = facts.get(article_id)
            if fact is None:
                continue
            try:
                row = articles.get_article(session=session, article_id=article_id, blocked_by="")
            except ArticleRemoved:
                copies.append(
                    OurCopy(
                        article_id=article_id,
                        url=fact.canonical_url,
                        first_seen_at=fact.first_seen_at,
                        removed_at=fact.removed_at,
                    )
                )
                continue
            copies.append(
                OurCopy(
                    article_id=article_id,
                    url=row.source_url,
                    first_seen_at=row.first_seen_at,
                    title=row.title,
                    publisher=row.publisher_name,
                )
            )
        result.append(
            TargetWithCopies(target=view, copies=copies, more=len(view.article_ids) - len(copies))
        )
    return result


def history(*, session: Session, takedown_id: str) -> list[AuditEvent]:
    """The request's audit rows, oldest first (its removals one row per article)."""
    return audit.list_events(
        session=session, takedown_id=takedown_id, after_id=None, limit=HISTORY_LIMIT
    )


@dataclass(frozen=True)
class BulkOutcome:
    decided: list[str]
    refused: list[str]


def decide_many(
    *, session: Session, takedown_ids: Sequence[str], decide: Callable[[str], Takedown]
) -> BulkOutcome:
    """One decision per request, each in its own savepoint: a request decided meanwhile (or
    unknown) is refused alone, the others still go through, each with its own audit row
    and e-mail."""
    decided, refused = [], []
    for takedown_id in dict.fromkeys(takedown_ids):
        try:
            with session.begin_nested():
                decide(takedown_id)
        except (Conflict, NotFound):
            refused.append(takedown_id)
        else:
            decided.append(takedown_id)
    return BulkOutcome(decided=decided, refused=refused)


def statement_of_reasons(template: str | None, particulars: str) -> str:
    """The template's sentence, then the operator's own words."""
    chosen = REJECTION_TEMPLATES.get(template or "")
    parts = [chosen.text if chosen else "", particulars.strip()]
    return "\n\n".join(part for part in parts if part)


# Keys and webhooks, audited under the operator's name ---------------------------------------


def create_key(
    *, session: Session, operator: Operator, request: ApiKeyCreate, now: datetime
) -> tuple[ApiKey, str]:
    """Create an API key (its secret returned once), audited."""
    return auth.create_api_key_audited(
        session=session,
        name=request.name,
        scope=request.scope,
        domain=request.domain,
        actor=operator.name,
        now=now,
    )


def revoke_key(*, session: Session, operator: Operator, key_id: int, now: datetime) -> ApiKey:
    """Revoke a key, audited; the key an operator signed in with cannot revoke itself (it
    would lock its own operator out mid-session, and leave no key to undo it with)."""
    if key_id == operator.key_id:
        raise Conflict("A key cannot revoke itself: sign in with another admin key.")
    return auth.revoke_api_key_audited(session=session, key_id=key_id, actor=operator.name, now=now)


def enable_webhook(
    *, session: Session, operator: Operator, endpoint_id: int, now: datetime
) -> WebhookEndpoint:
    """Enable a disabled webhook endpoint again, audited."""
    return webhooks.enable_endpoint_audited(
        session=session, endpoint_id=endpoint_id, actor=operator.name, now=now
    )
