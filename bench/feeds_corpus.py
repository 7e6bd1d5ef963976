"""The feed benchmark's corpus: publishers' RSS 2.0 feeds, the same bytes on every run.

Feed `i` lives at http://127.0.0.1:<base_port + i % ports>/feeds/<i>.xml: consecutive
subscriptions are on different ports (as a reader's subscriptions are on different hosts),
each port a publisher with `feeds / ports` section feeds. A feed carries its 20 newest
entries: a title, a one-sentence description, content:encoded of 3-6 paragraphs (the
article corpus's text, links and markup included), dc:creator, 1-3 categories, pubDate, and
a permalink guid on the feed's own origin (so byline reads that origin's robots.txt and
tdmrep.json, and nothing beyond 127.0.0.1).

Generation 0 is the first poll of every feed. At generation 1, one feed in ten (`changed`)
has published `NEW_ENTRIES` more: its five oldest entries drop out and its ETag changes; the
others are byte-identical and keep their ETag (their next conditional GET is a 304).
"""

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from bench.corpus import _paragraph, _sentence, tag_names, vocabulary

ENTRIES = 20
NEW_ENTRIES = 5
CHANGED_ONE_IN = 10
# Entries are dated back from here, a feed's own gap apart (1-6 hours).
LATEST = datetime(2026, 12, 1, 12, tzinfo=UTC)
CONTENT_TYPE = "application/rss+xml; charset=utf-8"


def feed_port(i: int, *, base_port: int, ports: int) -> int:
    return base_port + i % ports


def feed_path(i: int) -> str:
    return f"/feeds/{i}.xml"


def feed_url(i: int, *, base_port: int, ports: int) -> str:
    return f"http://127.0.0.1:{feed_port(i, base_port=base_port, ports=ports)}{feed_path(i)}"


def publisher_name(port: int) -> str:
    return f"Publisher {port}"


def changed(i: int) -> bool:
    """Whether feed `i` has new entries at generation 1 (one feed in ten)."""
    return i % CHANGED_ONE_IN == 3


def generations_of(i: int) -> tuple[int, ...]:
    return (0, 1) if changed(i) else (0,)


def etag(i: int, generation: int) -> str:
    return f'"feed-{i}-g{generation}"'


def _gap(i: int) -> timedelta:
    return timedelta(minutes=random.Random(i * 31 + 1).randint(60, 360))


def entry_xml(i: int, n: int, *, origin: str) -> str:
    """Entry `n` of feed `i` (higher `n` is newer) as an RSS <item>."""
    rng = random.Random(i * 1_000_003 + n)
    words, _ = vocabulary()
    title = " ".join(rng.choices(words[100:8000], k=rng.randint(6, 13))).capitalize()
    slug = "-".join(title.lower().split()[:6])
    link = f"{origin}/news/{i}/{n}-{slug}"
    paragraphs = "\n".join(_paragraph(rng, words, "127.0.0.1") for _ in range(rng.randint(3, 6)))
    published = LATEST - _gap(i) * (ENTRIES + NEW_ENTRIES - 1 - n)
    categories = "".join(
        f"<category>{escape(tag)}</category>" for tag in rng.sample(tag_names(), rng.randint(1, 3))
    )
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f'<guid isPermaLink="true">{escape(link)}</guid>'
        f"<description>{escape(_sentence(rng))}</description>"
        f"<content:encoded><![CDATA[{paragraphs}]]></content:encoded>"
        f"<dc:creator>{escape(rng.choice(AUTHORS))}</dc:creator>{categories}"
        f"<pubDate>{format_datetime(published)}</pubDate></item>"
    )


def feed_xml(i: int, generation: int, *, base_port: int, ports: int) -> bytes:
    """Feed `i` as published at `generation` (newest entry first)."""
    port = feed_port(i, base_port=base_port, ports=ports)
    origin = f"http://127.0.0.1:{port}"
    newest = ENTRIES + (NEW_ENTRIES if generation >= 1 and changed(i) else 0)
    items = "".join(
        entry_xml(i, n, origin=origin) for n in range(newest - 1, newest - 1 - ENTRIES, -1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>{escape(publisher_name(port))}: section {i // ports}</title>"
        f"<link>{origin}/sections/{i // ports}/</link>"
        f"<description>News from section {i // ports}</description><language>en</language>"
        f"{items}</channel></rss>"
    ).encode()


AUTHORS = [
    f"{first} {last}"
    for first in ("Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jun")
    for last in ("Adeyemi", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haas")
]
