"""Tables of the articles domain."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, ForeignKey, Index, Integer, String, Text, false
from sqlmodel import Field, SQLModel

from app.db import BIG_ROW_ID, UTCDateTime


class Publisher(SQLModel, table=True):
    """A publisher as articles are grouped by it, keyed by name. Its homepage is the one it
    was created with; ingest never changes it (each article keeps the one sent with it)."""

    __tablename__ = "publishers"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(300), unique=True)
    url: str | None = Field(default=None, sa_type=String(2048))
    # Live (not removed) articles; kept by the service so listing publishers is one scan.
    article_count: int = Field(default=0)
    created_at: datetime = Field(sa_type=UTCDateTime)


class Article(SQLModel, table=True):
    """An article with its attribution. After a takedown only the tombstone columns remain."""

    __tablename__ = "articles"
    __table_args__ = (
        Index("ix_articles_published_at_id", "published_at", "id"),
        Index("ix_articles_publisher_id_published_at_id", "publisher_id", "published_at", "id"),
        Index("ix_articles_source_domain_published_at_id", "source_domain", "published_at", "id"),
        Index("ix_articles_language_published_at_id", "language", "published_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    canonical_url: str = Field(sa_type=String(2048), unique=True)
    source_url: str = Field(sa_type=String(2048))
    source_domain: str = Field(sa_type=String(255))
    slug: str = Field(sa_type=String(200), unique=True)
    publisher_id: int = Field(
        sa_column=Column(Integer, ForeignKey("publishers.id"), nullable=False)
    )
    published_at: datetime = Field(sa_type=UTCDateTime)
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    content_hash: str = Field(sa_type=String(64))
    # Content: all None once removed.
    title: str | None = Field(default=None, sa_type=Text)
    excerpt: str | None = Field(default=None, sa_type=Text)
    body_html: str | None = Field(default=None, sa_type=Text)
    language: str | None = Field(default=None, sa_type=String(35))
    image_url: str | None = Field(default=None, sa_type=String(2048))
    image_alt: str | None = Field(default=None, sa_type=Text)
    license: str | None = Field(default=None, sa_type=Text)
    authors: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    tags: list[str] | None = Field(default=None, sa_type=JSON)
    # Tombstone: set when a takedown removed the content.
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    removed_by_takedown_id: str | None = Field(default=None, sa_type=String(36))
    # The publisher's homepage as sent with this article: its attribution is its own, and
    # another article naming the same publisher cannot change it (migration 0013).
    publisher_url: str | None = Field(default=None, sa_type=String(2048))
    # Whether `published_at` is the date the source gave. When it gave none, `published_at`
    # is when we first saw the article: the lists' order, never stated as publication date.
    published_at_known: bool = Field(
        default=False, sa_column_kwargs={"server_default": false()}, sa_type=Boolean
    )
    # Plain text of the body, for the search index only. Last, so that on SQLite a read of
    # the other columns stops before its overflow pages (migration 0006).
    body_text: str | None = Field(default=None, sa_type=Text)


class ArticleTag(SQLModel, table=True):
    """Tags as rows, so that filtering by tag uses an index on both engines."""

    __tablename__ = "article_tags"
    __table_args__ = (Index("ix_article_tags_tag_article_id", "tag", "article_id"),)

    article_id: int = Field(
        sa_column=Column(
            BIG_ROW_ID, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
        )
    )
    tag: str = Field(sa_type=String(100), primary_key=True)


class ArticleMatchKey(SQLModel, table=True):
    """Each article's matching key (app/articles/urls.py `match_key`), so that a takedown
    naming a URL however it is spelled finds the article. A narrow table of its own: the
    key is written once, at creation, and never widens the rows that reads fetch."""

    __tablename__ = "article_match_keys"
    __table_args__ = (Index("ix_article_match_keys_match_key", "match_key"),)

    article_id: int = Field(
        sa_column=Column(
            BIG_ROW_ID, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
        )
    )
    match_key: str = Field(sa_type=String(2048))


class ArticleTombstone(SQLModel, table=True):
    """The record of one removal: what proves that the article existed and what it held,
    without its words. Written with the removal; it stays when the article is published
    again after its blocks were lifted (the article row is then live again)."""

    __tablename__ = "article_tombstones"
    __table_args__ = (Index("ix_article_tombstones_article_id", "article_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    article_id: int = Field(
        sa_column=Column(BIG_ROW_ID, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False)
    )
    canonical_url: str = Field(sa_type=String(2048))
    publisher_id: int
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    content_hash: str = Field(sa_type=String(64))
    takedown_id: str | None = Field(default=None, sa_type=String(36))
    removed_at: datetime = Field(sa_type=UTCDateTime)
    restored_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
