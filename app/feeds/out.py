"""byline's own feeds of live articles: Atom 1.0 and JSON Feed 1.1.

A feed is the JSON list `GET /v1/articles` in another dress: the same query parameters
(filters, `q`, `cursor`, `limit`), the same query, the same pager (the feed's next link is the
list's `Link` header). Each entry adds the article's sanitised body, and carries its credit
line in both its summary and its content, so that every reader shows the attribution."""

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter

from app.articles import service
from app.articles.listing import page_rows
from app.articles.routes import (
    READ_CACHE_CONTROL,
    ArticleListing,
    ArticleListingDep,
    article_summary,
    etag_of,
    page_after,
)
from app.articles.schemas import ArticleSummary, Attribution
from app.cursor import NextPage, page_url
from app.docs import DOCS_PATH
from app.errors import problem_responses
from app.fastpath.conditional import not_modified

router = APIRouter(prefix="/v1", tags=["articles"])

ATOM = "application/atom+xml"
JSON_FEED = "application/feed+json"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
MEDIA_RSS_NAMESPACE = "http://search.yahoo.com/mrss/"
# What XML 1.0 allows in a document (its `Char` production); everything else is dropped.
_NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Dates as the JSON answers write them (RFC 3339, `Z`).
_DATE = TypeAdapter(datetime)


@dataclass(frozen=True)
class FeedEntry:
    article: ArticleSummary
    body_html: str


@dataclass(frozen=True)
class FeedPage:
    """One page of a feed and what it links to."""

    title: str
    home_page_url: str  # the same list as JSON
    about_url: str  # where the `_byline` extension is described
    feed_url: str  # the first page: the feed's identity, what a reader subscribes to
    page_url: str  # this page
    language: str | None  # the language filter, when there is one
    entries: list[FeedEntry]
    next_page: NextPage | None


def read_feed_page(request: Request, listing: ArticleListing) -> FeedPage:
    """The page of live articles the listing asks for, with their bodies. On a connection,
    without a session, as the JSON list reads its page."""
    base = str(request.app.state.settings.public_base_url)
    with request.app.state.engine.connect() as connection:
        rows, last = page_rows(
            connection,
            q=listing.q,
            filters=listing.filters,
            position=listing.position,
            limit=listing.limit,
        )
        bodies = service.live_article_bodies(
            session=connection, article_ids=[row.id for row in rows]
        )
    return FeedPage(
        title=_feed_title(listing),
        # byline serves no web page: what the feed describes is the JSON list it mirrors.
        home_page_url=page_url(request, None, path=request.app.url_path_for("list_articles")),
        about_url=f"{base}{DOCS_PATH}",
        feed_url=page_url(request, None),
        page_url=page_url(request, request.query_params.get("cursor")),
        language=listing.filters.language.lower() if listing.filters.language else None,
        entries=[
            FeedEntry(article_summary(row, base), bodies[row.id])
            for row in rows
            if row.id in bodies
        ],
        next_page=page_after(request, last=last, count=len(rows), limit=listing.limit),
    )


def _feed_title(listing: ArticleListing) -> str:
    filters = listing.filters
    chosen = [
        ("publisher", filters.publisher),
        ("domain", filters.domain),
        ("tag", filters.tag),
        ("language", filters.language),
        ("published after", filters.published_after),
        ("published before", filters.published_before),
        ("search", listing.q),
    ]
    described = ", ".join(f"{name} {value}" for name, value in chosen if value is not None)
    return f"byline articles ({described})" if described else "byline articles"


def _summary(article: ArticleSummary) -> str:
    """The excerpt, then the credit line: readers that show only summaries credit too."""
    credit = article.attribution.credit
    return f"{article.excerpt}\n\n{credit}" if article.excerpt else credit


def _content_html(entry: FeedEntry) -> str:
    """The sanitised body, then the credit line with its link to the original."""
    attribution = entry.article.attribution
    source = escape(attribution.canonical_url)
    # credit_line ends with the original's cleaned URL: written as a link here.
    lead = escape(attribution.credit.removesuffix(attribution.canonical_url))
    link = f'<a href="{source}" rel="noopener noreferrer nofollow">{source}</a>'
    return f'{entry.body_html}\n<p class="byline-credit">{lead}{link}</p>'


def _authors(article: ArticleSummary) -> list[tuple[str, str | None]]:
    """The article's authors; with none, its publisher: every entry names whose it is."""
    authors = article.attribution.authors
    if authors:
        return [(author.name, author.url) for author in authors]
    publisher = article.attribution.publisher
    return [(publisher.name, publisher.url)]


def _date(moment: datetime) -> str:
    return str(_DATE.dump_python(moment, mode="json"))


# Atom ---------------------------------------------------------------------------------


def _xml_text(value: str) -> str:
    return _NOT_XML_CHARACTERS.sub("", value)


def _element(
    parent: ET.Element | None, tag: str, text: str | None = None, **attributes: str | None
) -> ET.Element:
    """An element whose text and attributes hold only characters XML 1.0 allows (ElementTree
    escapes markup, but writes forbidden characters as they are: ill-formed XML)."""
    values = {
        name.replace("__", ":"): _xml_text(value)
        for name, value in attributes.items()
        if value is not None
    }
    element = ET.Element(tag, values) if parent is None else ET.SubElement(parent, tag, values)
    if text is not None:
        element.text = _xml_text(text)
    return element


def atom_document(page: FeedPage) -> bytes:
    """The page as an Atom 1.0 feed."""
    # Namespaces declared as attributes, unprefixed names for Atom's elements: ElementTree's
    # own namespace handling prefixes every element (ns0:feed) or refuses unprefixed
    # attributes with a default namespace.
    feed = _element(
        None,
        "feed",
        xmlns=ATOM_NAMESPACE,
        xmlns__media=MEDIA_RSS_NAMESPACE,
        xml__lang=page.language,
    )
    _element(feed, "id", page.feed_url)
    _element(feed, "title", page.title)
    if page.entries:
        # An empty page has no date we know; Atom's required feed date is then left out.
        newest = max(entry.article.updated_at for entry in page.entries)
        _element(feed, "updated", _date(newest))
    _element(feed, "link", rel="self", type=ATOM, href=page.page_url)
    _element(feed, "link", rel="alternate", type="application/json", href=page.home_page_url)
    if page.next_page is not None:
        _element(feed, "link", rel="next", type=ATOM, href=page.next_page.url)
    _element(feed, "generator", "byline")
    for entry in page.entries:
        _atom_entry(feed, entry)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _atom_entry(feed: ET.Element, entry: FeedEntry) -> None:
    article = entry.article
    attribution = article.attribution
    item = _element(feed, "entry", xml__lang=article.language)
    _element(item, "id", article.url)
    _element(item, "title", article.title, type="text")
    _element(item, "link", rel="alternate", type="text/html", href=attribution.source_url)
    _element(item, "link", rel="related", type="application/json", href=article.url)
    if attribution.published_at is not None:  # a date the publisher gave; none is invented
        _element(item, "published", _date(attribution.published_at))
    _element(item, "updated", _date(article.updated_at))
    for name, url in _authors(article):
        author = _element(item, "author")
        _element(author, "name", name)
        if url is not None:
            _element(author, "uri", url)
    # Where the entry was first published (RFC 4287, 4.2.11): the publisher.
    source = _element(item, "source")
    if attribution.publisher.url is not None:
        _element(source, "id", attribution.publisher.url)
        _element(source, "link", rel="alternate", href=attribution.publisher.url)
    _element(source, "title", attribution.publisher.name)
    if attribution.license is not None:
        _element(item, "rights", attribution.license, type="text")
    _element(item, "summary", _summary(article), type="text")
    _element(item, "content", _content_html(entry), type="html")
    for tag in article.tags:
        _element(item, "category", term=tag)
    if article.image is not None:
        _element(item, "media:thumbnail", url=article.image.url)


# JSON Feed ----------------------------------------------------------------------------


def _omitted_when_none(value: Any) -> bool:
    return value is None


def _optional() -> Any:
    # JSON Feed leaves out what it does not know rather than writing null.
    return Field(default=None, exclude_if=_omitted_when_none)


class JsonFeedAuthor(BaseModel):
    name: str
    url: str | None = _optional()


class BylineExtension(BaseModel):
    """`_byline`: the attribution block of the JSON answers, as they carry it."""

    about: str = Field(description="Where this extension is described.")
    attribution: Attribution


class JsonFeedItem(BaseModel):
    id: str
    url: str = Field(description="This article in the byline API.")
    external_url: str = Field(description="The original, at its publisher.")
    title: str
    content_html: str
    summary: str
    image: str | None = _optional()
    date_published: datetime | None = _optional()
    date_modified: datetime
    authors: list[JsonFeedAuthor]
    tags: list[str]
    language: str | None = _optional()
    byline: BylineExtension = Field(serialization_alias="_byline")


class JsonFeed(BaseModel):
    """A page of live articles as a JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""

    version: Literal["https://jsonfeed.org/version/1.1"]
    title: str
    home_page_url: str
    feed_url: str
    next_url: str | None = _optional()
    language: str | None = _optional()
    items: list[JsonFeedItem]


def json_feed_document(page: FeedPage) -> bytes:
    """The page as a JSON Feed 1.1."""
    feed = JsonFeed(
        version=JSON_FEED_VERSION,
        title=page.title,
        home_page_url=page.home_page_url,
        feed_url=page.feed_url,
        next_url=page.next_page.url if page.next_page else None,
        language=page.language,
        items=[
            JsonFeedItem(
                id=entry.article.url,
                url=entry.article.url,
                external_url=entry.article.attribution.source_url,
                title=entry.article.title,
                content_html=_content_html(entry),
                summary=_summary(entry.article),
                image=entry.article.image.url if entry.article.image else None,
                date_published=entry.article.attribution.published_at,
                date_modified=entry.article.updated_at,
                authors=[
                    JsonFeedAuthor(name=name, url=url) for name, url in _authors(entry.article)
                ],
                tags=entry.article.tags,
                language=entry.article.language,
                byline=BylineExtension(about=page.about_url, attribution=entry.article.attribution),
            )
            for entry in page.entries
        ],
    )
    return feed.model_dump_json(by_alias=True).encode()


# Routes -------------------------------------------------------------------------------


def _render(
    request: Request, listing: ArticleListing, document: Callable[[FeedPage], bytes]
) -> tuple[bytes, NextPage | None]:
    page = read_feed_page(request, listing)
    return document(page), page.next_page


async def _feed_answer(
    request: Request,
    listing: ArticleListing,
    document: Callable[[FeedPage], bytes],
    content_type: str,
) -> Response:
    """The feed with its ETag, or 304. The ETag is a hash of the body, which holds no clock
    time: it changes with anything the feed shows (an update, a removal, a new article, a
    publisher's new homepage) and with nothing else."""
    # One hop to the threadpool for the reads and the rendering, as the JSON list. A 304
    # reads and renders the page too: an ETag computed apart from the body could miss a field.
    body, next_page = await run_in_threadpool(_render, request, listing, document)
    etag = etag_of(hashlib.sha256(body).hexdigest())
    headers = {"ETag": etag, "Cache-Control": READ_CACHE_CONTROL}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if next_page is not None:
        headers["Link"] = next_page.link
    return Response(body, media_type=content_type, headers=headers)


_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: the feed is the one the ETag names."}
}


class JsonFeedResponse(JSONResponse):
    """Names the JSON Feed's media type and schema in the OpenAPI document (FastAPI documents
    a response model for JSON response classes only); the route answers with the bytes
    json_feed_document wrote."""

    media_type = JSON_FEED


@router.get(
    "/articles.atom",
    response_class=Response,
    responses={
        200: {
            "description": "An Atom 1.0 feed of live articles, newest first.",
            "content": {ATOM: {"schema": {"type": "string"}}},
        },
        **_NOT_MODIFIED,
        **problem_responses(400, 422),
    },
)
async def atom_feed(request: Request, listing: ArticleListingDep) -> Response:
    """Live articles as an Atom 1.0 feed: the filters, search and pages of GET /v1/articles."""
    return await _feed_answer(request, listing, atom_document, f"{ATOM}; charset=utf-8")


@router.get(
    "/articles.json",
    response_model=JsonFeed,
    response_class=JsonFeedResponse,
    responses={
        200: {"description": "A JSON Feed 1.1 of live articles, newest first."},
        **_NOT_MODIFIED,
        **problem_responses(400, 422),
    },
)
async def json_feed(request: Request, listing: ArticleListingDep) -> Response:
    """Live articles as a JSON Feed 1.1: the filters, search and pages of GET /v1/articles."""
    return await _feed_answer(request, listing, json_feed_document, JSON_FEED)
