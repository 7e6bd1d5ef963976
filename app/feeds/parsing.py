"""A fetched feed as article payloads: RSS 0.9x/1.0/2.0 and Atom, JSON Feed 1.0/1.1 from its
JSON. Each entry becomes what `POST /v1/articles` takes, so the API's validation and
sanitising apply to it unchanged.

A well-formed RSS 0.9x/2.0 document (most news feeds) is read by fastfeedparser, on lxml
(feedparser was most of a poll's parsing time, bench/README "Feeds"); Atom, RDF and malformed
documents by feedparser, which keeps every author's link and, from a malformed document, what
can be read, saying what was wrong.

A document that declares entities in its DOCTYPE is refused before any parser sees it: no
feed needs one, and entity expansion is how an XML bomb blows memory and how an external
entity reads local files.
"""

import html
import io
import json
import re
import time
from calendar import timegm
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import fastfeedparser
import feedparser
from lxml import etree

from app.articles.sanitise import excerpt_of, plain_text

MAX_TITLE_CHARS = 1000
MAX_EXCERPT_CHARS = 2000
MAX_TAGS = 30
MAX_AUTHORS = 50
_ENTITY_DECLARATION = b"<!ENTITY"
IGNORED_SLIPS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")


class FeedRefused(Exception):
    """The document is not read at all (entity declarations, not a feed)."""


@dataclass
class ParsedFeed:
    title: str | None = None
    site_url: str | None = None
    language: str | None = None
    ttl: timedelta | None = None  # how long the feed says it may be cached (RSS <ttl>)
    entries: list[dict[str, Any]] = field(default_factory=list)  # article payloads
    invalid: int = 0  # entries without a usable link
    dates: list[datetime] = field(default_factory=list)  # entries' dates (publishing pace)
    error: str | None = None  # malformed: what was read is kept, and this says why


def parse_feed(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """The feed at `url` as article payloads (publisher and language left to the caller)."""
    if _looks_like_json(body, content_type):
        return _parse_json_feed(body, url)
    # Anywhere, not only in a leading DOCTYPE: a long comment can push the DOCTYPE far in.
    if _ENTITY_DECLARATION in body:
        raise FeedRefused("entity declarations are refused (XML bomb or external entity)")
    tree = _well_formed_rss(body)
    if tree is not None:
        fast = _parse_well_formed(body, tree, url)
        if fast is not None:
            return fast
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    document = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    if not document.get("version") and not document.entries:
        reason = document.get("bozo_exception")
        raise FeedRefused(f"not a feed{f': {_short(reason)}' if reason else ''}")
    meta = document.feed
    parsed = ParsedFeed(
        title=_text(meta.get("title")),
        site_url=_absolute(meta.get("link"), url),
        language=_language(meta.get("language")),
        ttl=_ttl(meta.get("ttl")),
    )
    for entry in document.entries:
        _add(parsed, _rss_or_atom_entry(entry, url))
    if document.get("bozo") and document.get("bozo_exception") is not None:
        exception = document["bozo_exception"]
        # A mislabelled content type or encoding is not worth reporting: the feed was read.
        if not isinstance(exception, IGNORED_SLIPS):
            parsed.error = f"malformed feed, read what could be read: {_short(exception)}"
    return parsed


# No entities, no DTD, no network: only whether the document is well-formed (and its <ttl>).
_STRICT_XML = etree.XMLParser(
    resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False
)


def _well_formed_rss(body: bytes) -> Any:
    """The document's tree if it is well-formed RSS, else None."""
    try:
        tree = etree.fromstring(body, parser=_STRICT_XML)
    except etree.XMLSyntaxError:
        return None
    return tree if tree.tag == "rss" else None


def _parse_well_formed(body: bytes, tree: Any, url: str) -> ParsedFeed | None:
    """A well-formed RSS document through fastfeedparser; None for what it does not take as
    a feed (feedparser then decides)."""
    try:
        # bytes, never str: given a string that starts with http, it would fetch it.
        document = fastfeedparser.parse(bytes(body))
    except ValueError:
        return None
    meta = document.get("feed") or {}
    parsed = ParsedFeed(
        title=_text(meta.get("title")),
        site_url=_absolute(meta.get("link"), url),
        language=_language(tree.findtext("channel/language")),
        ttl=_ttl(tree.findtext("channel/ttl")),
    )
    for entry in document.get("entries") or []:
        _add(parsed, _fast_entry(entry, url))
    return parsed


def _fast_entry(entry: Any, base: str) -> tuple[dict[str, Any], datetime | None] | None:
    link = _absolute(entry.get("link"), base)
    if link is None:
        return None
    content = _content(entry)
    summary = entry.get("description")
    if content == summary:  # fastfeedparser gives an item without content its description
        content = None
    authors = _authors(entry)
    published = _iso_date(entry.get("published")) or _iso_date(entry.get("updated"))
    return _payload(
        link=link,
        title=entry.get("title"),
        content=content,
        summary=summary,
        authors=authors,
        published=published,
        tags=[tag.get("term") for tag in entry.get("tags") or []],
        image=_fast_image(entry, base),
    ), published


def _content(entry: Any) -> str | None:
    """An entry's content (its HTML one first), as both parsers give it."""
    contents = entry.get("content") or []
    content = next((c.get("value") for c in contents if "html" in (c.get("type") or "")), None)
    return content or next((c.get("value") for c in contents if c.get("value")), None)


def _authors(entry: Any) -> list[dict[str, Any]]:
    """An entry's authors (name, link), as both parsers give them."""
    authors = [
        {"name": a.get("name"), **({"url": a["href"]} if a.get("href") else {})}
        for a in entry.get("authors") or []
        if a.get("name")
    ]
    if not authors and entry.get("author"):
        authors = [{"name": entry["author"]}]
    return authors


def _fast_image(entry: Any, base: str) -> str | None:
    for media in entry.get("media_content") or []:
        kind = (media.get("medium") or media.get("type") or "image").lower()
        if "image" in kind and media.get("url"):
            return _absolute(media["url"], base)
    for enclosure in entry.get("enclosures") or []:
        if (enclosure.get("type") or "").startswith("image/") and enclosure.get("url"):
            return _absolute(enclosure["url"], base)
    for media in entry.get("media_content") or []:
        if media.get("thumbnail_url"):
            return _absolute(media["thumbnail_url"], base)
    return None


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip()[:1] == b"{"


def _add(parsed: ParsedFeed, entry: tuple[dict[str, Any], datetime | None] | None) -> None:
    if entry is None:
        parsed.invalid += 1
        return
    payload, date = entry
    parsed.entries.append(payload)
    if date is not None:
        parsed.dates.append(date)


def _rss_or_atom_entry(entry: Any, base: str) -> tuple[dict[str, Any], datetime | None] | None:
    link = _absolute(entry.get("link"), base)
    if link is None and entry.get("guidislink"):
        link = _absolute(entry.get("id"), base)
    if link is None:
        return None
    content = _content(entry)
    summary = entry.get("summary")
    authors = _authors(entry)
    image = _rss_image(entry, base)
    published = _struct_time(entry.get("published_parsed"))
    # Asked only when present: feedparser maps a missing one to published_parsed, warning.
    updated = _struct_time(entry["updated_parsed"]) if "updated" in entry else None
    return _payload(
        link=link,
        title=entry.get("title"),
        content=content,
        summary=summary,
        authors=authors,
        published=published or updated,
        tags=[tag.get("term") for tag in entry.get("tags") or []],
        image=image,
    ), published or updated


def _rss_image(entry: Any, base: str) -> str | None:
    for media in entry.get("media_content") or []:
        kind = (media.get("medium") or media.get("type") or "image").lower()
        if "image" in kind and media.get("url"):
            return _absolute(media["url"], base)
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/"):
            return _absolute(link.get("href"), base)
    for thumbnail in entry.get("media_thumbnail") or []:
        if thumbnail.get("url"):
            return _absolute(thumbnail["url"], base)
    return None


def _parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedRefused(f"not a feed: invalid JSON ({_short(exc)})") from None
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise FeedRefused("not a feed: JSON without a JSON Feed version")
    items = document.get("items")
    parsed = ParsedFeed(
        title=_text(document.get("title")),
        site_url=_absolute(document.get("home_page_url"), url),
        language=_language(document.get("language")),
    )
    if not isinstance(items, list):
        parsed.error = "malformed feed: JSON Feed without an items list"
        return parsed
    feed_authors = _json_authors(document)
    for item in items:
        _add(parsed, _json_item(item, url, feed_authors) if isinstance(item, dict) else None)
    return parsed


def _json_authors(holder: dict[str, Any]) -> list[dict[str, Any]]:
    raw = holder.get("authors")
    if not isinstance(raw, list):
        raw = [holder["author"]] if isinstance(holder.get("author"), dict) else []
    return [
        {"name": a["name"], **({"url": a["url"]} if isinstance(a.get("url"), str) else {})}
        for a in raw
        if isinstance(a, dict) and isinstance(a.get("name"), str)
    ]


def _json_item(
    item: dict[str, Any], base: str, feed_authors: list[dict[str, Any]]
) -> tuple[dict[str, Any], datetime | None] | None:
    link = _absolute(_string(item.get("url")) or _string(item.get("external_url")), base)
    if link is None:
        return None
    content = _string(item.get("content_html"))
    if content is None and _string(item.get("content_text")):
        content = f"<p>{html.escape(item['content_text'])}</p>"
    published = _iso_date(item.get("date_published"))
    updated = _iso_date(item.get("date_modified"))
    raw_tags = item.get("tags")
    tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
    image = _string(item.get("image")) or _string(item.get("banner_image"))
    return _payload(
        link=link,
        title=_string(item.get("title")),
        content=content,
        summary=_string(item.get("summary")),
        authors=_json_authors(item) or feed_authors,
        published=published or updated,
        tags=[tag for tag in tags if isinstance(tag, str)],
        image=_absolute(image, base),
    ), published or updated


def _payload(
    *,
    link: str,
    title: str | None,
    content: str | None,
    summary: str | None,
    authors: list[dict[str, Any]],
    published: datetime | None,
    tags: list[Any],
    image: str | None,
) -> dict[str, Any]:
    """An article payload as `POST /v1/articles` takes it (without publisher and language).
    An entry without a title is titled by the start of its text; one without a body carries
    its title (link blogs)."""
    text = plain_text(summary or content or "") if (summary or content) else ""
    title_text = _text(title) or (excerpt_of(text, 120) if text else None)
    body = content or summary or (f"<p>{html.escape(title_text)}</p>" if title_text else None)
    payload: dict[str, Any] = {
        "title": (title_text or "")[:MAX_TITLE_CHARS],
        "body_html": body or "",
        "source_url": link,
        "authors": [
            {"name": str(a["name"])[:300], **({"url": a["url"]} if a.get("url") else {})}
            for a in authors[:MAX_AUTHORS]
        ],
        "tags": list(
            dict.fromkeys(t.strip().lower()[:100] for t in tags if isinstance(t, str) and t.strip())
        )[:MAX_TAGS],
    }
    if content and summary:
        payload["excerpt"] = plain_text(summary)[:MAX_EXCERPT_CHARS]
    if published is not None:
        payload["published_at"] = published.isoformat()
    if image:
        payload["image"] = {"url": image}
    return payload


def _absolute(value: Any, base: str) -> str | None:
    """An absolute http(s) URL, `value` resolved against `base`; None when there is none."""
    if not isinstance(value, str) or not value.strip():
        return None
    resolved = urljoin(base, value.strip())
    return resolved if urlsplit(resolved).scheme in ("http", "https") else None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _text(value: Any) -> str | None:
    return (plain_text(value) or None) if isinstance(value, str) else None


def _language(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().replace("_", "-")
    return value if _LANGUAGE.match(value) else None


def _ttl(value: Any) -> timedelta | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return timedelta(minutes=minutes) if 0 < minutes <= 7 * 24 * 60 else None


def _struct_time(value: time.struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _iso_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _short(exc: object) -> str:
    return " ".join(str(exc).split())[:200]
