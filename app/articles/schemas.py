"""What ingest clients send and what readers get back."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.articles.sanitise import plain_text
from app.articles.urls import InvalidUrl, normalise_url


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _plain(value: str) -> str:
    return plain_text(_no_nul(value))


def _non_empty_plain(value: str) -> str:
    value = _plain(value)
    if not value:
        raise ValueError("must contain text (markup is stripped)")
    return value


def _http_url(value: str) -> str:
    _no_nul(value)
    try:
        normalise_url(value)
    except InvalidUrl as exc:
        raise ValueError(f"must be an absolute http(s) URL: {exc}") from None
    return value.strip()


def _utc(value: datetime) -> datetime:
    # A naive timestamp is taken as UTC rather than refused: many feeds omit the offset.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Documented: at least one character that is not a space (markup is stripped as well).
_HAS_TEXT = Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})
Title = Annotated[
    str, StringConstraints(max_length=1000), AfterValidator(_non_empty_plain), _HAS_TEXT
]
Name = Annotated[
    str, StringConstraints(max_length=300), AfterValidator(_non_empty_plain), _HAS_TEXT
]
ShortText = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_plain)]
# Documented with a format of our own, so that clients (and the fuzzer) know what goes there:
# not "uri", because feeds' links are often IRIs or carry stray `%`, and are kept as sent.
HttpUrl = Annotated[
    str,
    StringConstraints(max_length=2048),
    AfterValidator(_http_url),
    Field(json_schema_extra={"format": "http-url"}),
]
Html = Annotated[
    str, StringConstraints(min_length=1, max_length=1_000_000), AfterValidator(_no_nul)
]
Tag = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, strip_whitespace=True, to_lower=True),
    AfterValidator(_non_empty_plain),
]
Language = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")]
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class PublisherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    url: HttpUrl | None = None


class Author(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    url: HttpUrl | None = None


class Image(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    alt: ShortText | None = None


class ArticleIn(BaseModel):
    """An article as an ingest client sends it. Attribution is required."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    body_html: Html
    source_url: HttpUrl = Field(description="The primary source link (absolute http/https).")
    publisher: PublisherIn
    authors: list[Author] = Field(default_factory=list, max_length=50)
    excerpt: ShortText | None = None
    published_at: UtcDatetime | None = None
    language: Language | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=30)
    image: Image | None = None
    license: ShortText | None = None


class PublisherPublic(BaseModel):
    name: str
    url: str | None


# What reads return: the stored values, validated once on the way in, are not validated
# again (the input models' URL rules cost more per article than the rest of a read).
class AuthorPublic(BaseModel):
    name: str
    url: str | None = None


class ImagePublic(BaseModel):
    url: str
    alt: str | None = None


class Attribution(BaseModel):
    """Everything a page needs to say "read the original here"."""

    source_url: str
    canonical_url: str
    source_domain: str
    publisher: PublisherPublic
    authors: list[AuthorPublic]
    license: str | None
    published_at: datetime
    first_seen_at: datetime
    credit: str


class ArticleSummary(BaseModel):
    id: int
    slug: str
    url: str = Field(description="This article in the byline API.")
    title: str
    excerpt: str | None
    language: str | None
    tags: list[str]
    image: ImagePublic | None
    published_at: datetime
    updated_at: datetime
    attribution: Attribution


class ArticlePublic(ArticleSummary):
    body_html: str


class ArticlesPublic(BaseModel):
    items: list[ArticleSummary]
    next_cursor: str | None


IngestStatus = Literal["created", "updated", "unchanged", "invalid", "blocked"]


class IngestResult(BaseModel):
    status: IngestStatus
    article: ArticlePublic


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, object]] = Field(min_length=1)


class BatchItemError(BaseModel):
    field: str
    message: str


class BatchItemResult(BaseModel):
    index: int
    status: IngestStatus
    id: int | None = None
    errors: list[BatchItemError] | None = None


class BatchResult(BaseModel):
    items: list[BatchItemResult]
    counts: dict[str, int]


class PublisherWithCount(BaseModel):
    id: int
    name: str
    url: str | None
    article_count: int


class PublishersPublic(BaseModel):
    items: list[PublisherWithCount]
