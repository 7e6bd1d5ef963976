"""Every table, imported in one place so Alembic and tests see the whole schema."""

from sqlmodel import SQLModel

from app.articles.models import (
    Article,
    ArticleMatchKey,
    ArticleTag,
    ArticleTombstone,
    Publisher,
)
from app.auth import ApiKey
from app.console.models import ConsoleSession
from app.feeds.models import Feed
from app.notifications.models import ClaimantEmail, WebhookDelivery, WebhookEndpoint, WebhookEvent
from app.publishers.models import PublisherVerification
from app.scheduler.models import RemovalJob
from app.takedowns.models import AuditEvent, Block, RateLimitCounter, Takedown, TakedownTarget
from app.web.csrf import CsrfSecret

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "Article",
    "ArticleMatchKey",
    "ArticleTag",
    "ArticleTombstone",
    "AuditEvent",
    "Block",
    "ClaimantEmail",
    "ConsoleSession",
    "CsrfSecret",
    "Feed",
    "Publisher",
    "PublisherVerification",
    "RateLimitCounter",
    "RemovalJob",
    "Takedown",
    "TakedownTarget",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "metadata",
]
