"""Every table, imported in one place so Alembic and tests see the whole schema."""

from sqlmodel import SQLModel

from app.articles.models import Article, ArticleTag, Publisher
from app.auth import ApiKey
from app.scheduler.models import RemovalJob
from app.takedowns.models import AuditEvent, Block, RateLimitCounter, Takedown, TakedownTarget

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "Article",
    "ArticleTag",
    "AuditEvent",
    "Block",
    "Publisher",
    "RateLimitCounter",
    "RemovalJob",
    "Takedown",
    "TakedownTarget",
    "metadata",
]
