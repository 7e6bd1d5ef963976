"""The two RSS readers agree: a well-formed RSS document is read by fastfeedparser, the rest
by feedparser, and an entry is the same article payload whichever read it."""

from datetime import timedelta
from typing import Any

import fastfeedparser
import pytest

from app.feeds import parsing
from app.feeds.parsing import parse_feed

FEED_URL = "https://news.example/feeds/world.xml"

RICH_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>World &amp; Co</title>
  <link>https://news.example/</link>
  <language>fr-FR</language>
  <ttl>90</ttl>
  <item>
    <title>Full story</title>
    <link>/world/full-story?utm_source=rss</link>
    <guid isPermaLink="false">tag:news.example,2026:1</guid>
    <description>&lt;p&gt;The summary.&lt;/p&gt;</description>
    <content:encoded><![CDATA[<p>The <b>whole</b> story.</p>]]></content:encoded>
    <dc:creator>Ana Lima</dc:creator>
    <category>World</category>
    <category>Politics</category>
    <pubDate>Mon, 30 Nov 2026 07:45:00 +0100</pubDate>
    <media:content url="/img/full.jpg" medium="image"/>
  </item>
  <item>
    <title>Enclosed</title>
    <link>https://news.example/world/enclosed</link>
    <description>Only a summary</description>
    <enclosure url="https://cdn.news.example/e.png" type="image/png" length="100"/>
    <pubDate>Sun, 29 Nov 2026 10:00:00 GMT</pubDate>
  </item>
  <item>
    <description>A link blog entry without a title or a date</description>
    <link>https://news.example/world/untitled</link>
  </item>
  <item>
    <title>No link at all</title>
    <description>Counted invalid.</description>
  </item>
</channel>
</rss>
"""


def _through_feedparser(monkeypatch: pytest.MonkeyPatch, body: bytes) -> parsing.ParsedFeed:
    with monkeypatch.context() as patched:
        patched.setattr(parsing, "_well_formed_rss", lambda body: None)
        return parse_feed(body, url=FEED_URL)


def test_a_well_formed_rss_feed_reads_the_same_through_either_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    real_parse = fastfeedparser.parse

    def counted(source: Any, **options: Any) -> Any:
        calls.append(source)
        return real_parse(source, **options)

    monkeypatch.setattr(fastfeedparser, "parse", counted)
    fast = parse_feed(RICH_RSS, url=FEED_URL)
    assert len(calls) == 1 and isinstance(calls[0], bytes)
    slow = _through_feedparser(monkeypatch, RICH_RSS)
    assert len(calls) == 1

    assert fast == slow
    assert (fast.title, fast.site_url, fast.language, fast.ttl) == (
        "World & Co",
        "https://news.example/",
        "fr-FR",
        timedelta(minutes=90),
    )
    assert fast.invalid == 1
    full, enclosed, untitled = fast.entries
    assert full["source_url"] == "https://news.example/world/full-story?utm_source=rss"
    assert full["body_html"] == "<p>The <b>whole</b> story.</p>"
    assert full["excerpt"] == "The summary."
    assert full["authors"] == [{"name": "Ana Lima"}]
    assert full["tags"] == ["world", "politics"]
    assert full["published_at"] == "2026-11-30T06:45:00+00:00"
    assert full["image"] == {"url": "https://news.example/img/full.jpg"}
    assert enclosed["image"] == {"url": "https://cdn.news.example/e.png"}
    assert untitled["title"].startswith("A link blog entry")
    assert "published_at" not in untitled


def test_malformed_rss_goes_to_feedparser_which_reads_what_it_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(source: Any, **options: Any) -> Any:
        raise AssertionError("a malformed document is feedparser's")

    monkeypatch.setattr(fastfeedparser, "parse", never)
    broken = RICH_RSS.replace(b"</channel>", b"<item><title>Cut off")
    parsed = parse_feed(broken, url=FEED_URL)
    assert [entry["title"] for entry in parsed.entries][:3] == [
        "Full story",
        "Enclosed",
        "A link blog entry without a title or a date",
    ]
    assert parsed.error is not None and parsed.error.startswith("malformed feed")


def test_a_string_is_never_handed_to_fastfeedparser_which_would_fetch_a_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(fastfeedparser, "parse", lambda source, **_: seen.append(source) or {})
    parse_feed(b"<rss version='2.0'><channel><title>t</title></channel></rss>", url=FEED_URL)
    assert seen and all(isinstance(source, bytes) for source in seen)
