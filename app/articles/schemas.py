"""What ingest clients send and what readers get back."""

import unicodedata
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


# Letters, digits, punctuation and symbols: what a reader can see. Spaces, controls, format
# characters (zero-width spaces and joiners, direction marks, soft hyphens) and combining
# marks alone show nothing.
_VISIBLE_CATEGORIES = frozenset("LNPS")


def _non_empty_plain(value: str) -> str:
    value = _plain(value)
    if not any(unicodedata.category(char)[0] in _VISIBLE_CATEGORIES for char in value):
        raise ValueError("must contain visible text (markup is stripped)")
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


# Plain text may hold `<`: a title about HTML, a formula, "<3". Stripping or refusing it
# would change what the source wrote; escaping it is the writer of HTML's job.
PLAIN_TEXT = (
    "Plain text, not HTML. Markup in what ingest clients send is stripped and character"
    " references are decoded (`&lt;b&gt;` is stored as `<b>`), so the text may hold `<`, `>`,"
    " `&` and quotes as characters: escape it wherever it is written into HTML."
)
_HAS_VISIBLE_TEXT = (
    " At least one visible character (a letter, digit, punctuation mark or symbol) once"
    " markup is stripped."
)
# The pattern says what a schema can (a character that is not a space); the description
# says the rest.
_HAS_TEXT = Field(
    description=PLAIN_TEXT + _HAS_VISIBLE_TEXT,
    json_schema_extra={"minLength": 1, "pattern": r"\S"},
)
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
    Field(description="Lower-cased. " + PLAIN_TEXT + _HAS_VISIBLE_TEXT),
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
    alt: ShortText | None = Field(default=None, description=PLAIN_TEXT)


class ArticleIn(BaseModel):
    """An article as an ingest client sends it. Attribution is required."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    body_html: Html
    source_url: HttpUrl = Field(description="The primary source link (absolute http/https).")
    publisher: PublisherIn = Field(
        description="Credited on this article as sent. The shared publisher record of that"
        " name (GET /v1/publishers) keeps the homepage it was created with: ingest never"
        " changes it."
    )
    authors: list[Author] = Field(default_factory=list, max_length=50)
    excerpt: ShortText | None = Field(default=None, description=PLAIN_TEXT)
    published_at: UtcDatetime | None = Field(
        default=None,
        description="When the source published the article (a time without an offset is"
        " taken as UTC); at most a day ahead of now. Leave it out when unknown: nothing then"
        " states a publication date, and lists place the article at the time we first saw"
        " it.",
    )
    language: Language | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=30)
    image: Image | None = None
    license: ShortText | None = Field(default=None, description=PLAIN_TEXT)


class PublisherPublic(BaseModel):
    name: str = Field(description=PLAIN_TEXT)
    url: str | None


# What reads return: the stored values, validated once on the way in, are not validated
# again (the input models' URL rules cost more per article than the rest of a read).
class AuthorPublic(BaseModel):
    name: str = Field(description=PLAIN_TEXT)
    url: str | None = None


class ImagePublic(BaseModel):
    url: str
    alt: str | None = Field(default=None, description=PLAIN_TEXT)


class Attribution(BaseModel):
    """Everything a page needs to say "read the original here"."""

    source_url: str = Field(description="The source link as the ingest client sent it.")
    canonical_url: str = Field(
        description="The source link cleaned: tracking parameters, fragment and default port"
        " removed, host lower-cased, query sorted. The credit line links it."
    )
    source_domain: str
    publisher: PublisherPublic = Field(description="The publisher as sent with this article.")
    authors: list[AuthorPublic]
    license: str | None = Field(description=PLAIN_TEXT)
    published_at: datetime | None = Field(
        description="When the source published the article, as sent; null when no date was"
        " sent (none is guessed)."
    )
    first_seen_at: datetime
    credit: str = Field(
        description="`Originally published by <publisher> (<authors>) on <date>. Read the"
        " original: <canonical_url>`; the date is left out when unknown. " + PLAIN_TEXT
    )


class ArticleSummary(BaseModel):
    id: int
    slug: str
    url: str = Field(description="This article in the byline API.")
    title: str = Field(description=PLAIN_TEXT)
    excerpt: str | None = Field(description=PLAIN_TEXT)
    language: str | None
    tags: list[str] = Field(description="Lower-cased. " + PLAIN_TEXT)
    image: ImagePublic | None
    published_at: datetime = Field(
        description="The date lists are ordered by: the publication date when it is known"
        " (attribution.published_at), else when byline first saw the article."
    )
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
    """A publisher as articles are grouped by it: its name, and the homepage it was created
    with (only an operator changes it; each article credits the one sent with it)."""

    id: int
    name: str = Field(description=PLAIN_TEXT)
    url: str | None
    article_count: int


class PublishersPublic(BaseModel):
    items: list[PublisherWithCount]
