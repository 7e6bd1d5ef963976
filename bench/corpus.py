"""A deterministic synthetic news corpus: ingest items exactly as a crawler would POST them.

Article `n` is always the same item (seeded by `n`), so the loader, the ingest benchmark and
the query lists agree without storing anything. Text is drawn from a Zipf-distributed
vocabulary (real English words first, then invented names and rare terms), which gives search
terms a realistic spread of document frequencies.
"""

import random
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate
from typing import Any

PUBLISHERS = 2_000
AUTHORS_PER_PUBLISHER = 12
TAGS = 400
VOCABULARY = 40_000
STREAM_WORDS = 2_000_000
FIRST_DAY = datetime(2012, 1, 1, tzinfo=UTC)
SPAN_SECONDS = int((datetime(2026, 1, 1, tzinfo=UTC) - FIRST_DAY).total_seconds())
LANGUAGES = ["en"] * 80 + ["de"] * 6 + ["fr"] * 5 + ["es"] * 4 + ["it", "pt", "nl", "pt-br", "sv"]
LICENSES = [None] * 6 + ["All rights reserved", "CC BY 4.0", "CC BY-SA 4.0", "CC BY-ND 4.0"]
SECTIONS = ["world", "politics", "business", "tech", "science", "sport", "culture", "health"]

# The commonest words of English news, most frequent first; the long tail is invented below.
COMMON_WORDS = """
the of to and a in that is for on said with was he it as at by from his be have has an but
are not they who more this were had been their year would its about after which people one
two new also will government than first there up out over into when last other all could
some before us can what minister president them three time years say just police since told
percent state back while million only most against under world now may company week report
city many where day country national public market court first second party between during
officials health where said off according security billion because before family support
case water including service team season group election workers months climate energy price
prices school children women war military home number law bank trade leader local later
plan data research study found early among economic money business news high long part
policy power foreign council deal force hospital border water coast storm flood fire crisis
rates inflation interest growth vaccine virus pandemic campaign vote votes voters senate
congress parliament union strike talks summit agreement sanctions troops attack ceasefire
refugees migrants asylum housing rent mortgage tax taxes budget deficit debt spending cuts
jobs unemployment wages factory exports imports tariffs oil gas coal solar wind nuclear
emissions carbon warming drought heatwave wildfire earthquake hurricane typhoon tornado
rescue victims survivors investigation trial judge jury verdict prison sentence charges
arrest suspect shooting protest protesters rally march strike union teachers nurses doctors
patients cancer treatment drug drugs trial results scientists researchers university study
space mission rocket satellite launch moon mars telescope discovery species ocean forest
football league cup final match goal coach player players champion title tournament olympic
film music festival album award prize museum exhibition artist book novel author theatre
technology software app users data privacy platform online internet social media company
startup investors shares stock market earnings profit revenue chief executive board merger
acquisition billion deal banks lending central bank currency dollar euro pound yen yuan
"""


@cache
def vocabulary() -> tuple[list[str], list[float]]:
    """Words by rank and their cumulative Zipf weights (s = 1.07)."""
    rng = random.Random(7)
    words = list(dict.fromkeys(COMMON_WORDS.split()))
    seen = set(words)
    onsets = ["b", "br", "c", "ch", "d", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "pr", "r"]
    onsets += ["s", "sh", "st", "t", "tr", "v", "w", "z", "j", "kr", "pl", "sk"]
    vowels = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "io", "y"]
    codas = ["", "", "", "n", "r", "s", "l", "t", "m", "nd", "rk", "st", "x", "ng"]
    while len(words) < VOCABULARY:
        word = "".join(
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
            for _ in range(rng.choice((1, 2, 2, 2, 3, 3)))
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    weights = list(accumulate(1 / (rank + 1) ** 1.07 for rank in range(len(words))))
    return words, weights


@cache
def tag_names() -> list[str]:
    words, _ = vocabulary()
    return [f"{words[200 + 7 * i]}" for i in range(TAGS)]


@cache
def publishers() -> list[dict[str, Any]]:
    """2,000 publishers with a home page and a domain each, and a pool of authors."""
    rng = random.Random(11)
    words, _ = vocabulary()
    kinds = ["Times", "Post", "Herald", "Gazette", "Tribune", "Chronicle", "Courier", "Observer"]
    kinds += ["Journal", "Daily", "Review", "Monitor", "Standard", "Express", "News", "Wire"]
    result = []
    for index in range(PUBLISHERS):
        place = words[1_000 + index].capitalize()
        kind = kinds[index % len(kinds)]
        domain = f"{place.lower()}{kind.lower()}.example"
        authors = [
            {
                "name": f"{words[5_000 + rng.randrange(20_000)].capitalize()} "
                f"{words[5_000 + rng.randrange(20_000)].capitalize()}",
                "url": f"https://{domain}/staff/{index}-{n}" if rng.random() < 0.5 else None,
            }
            for n in range(AUTHORS_PER_PUBLISHER)
        ]
        result.append(
            {
                "name": f"The {place} {kind}",
                "url": f"https://www.{domain}/",
                "domain": domain,
                "authors": authors,
            }
        )
    return result


@cache
def _publisher_weights() -> list[float]:
    # A few wire services and big titles publish most of the news.
    return list(accumulate(1 / (rank + 1) ** 0.8 for rank in range(PUBLISHERS)))


@cache
def _word_stream() -> list[str]:
    """Two million words drawn from the vocabulary; sentences are random slices of it (drawing
    each word on its own made generating 1M articles take longer than loading them)."""
    words, weights = vocabulary()
    return random.Random(13).choices(words, cum_weights=weights, k=STREAM_WORDS)


def _sentence(rng: random.Random) -> str:
    # random() rather than randrange(): this runs 50 million times for a 1M-article corpus.
    start = int(rng.random() * (STREAM_WORDS - 24))
    text = " ".join(_word_stream()[start : start + 8 + int(rng.random() * 17)])
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random, words: list[str], domain: str) -> str:
    sentences = [_sentence(rng) for _ in range(2 + int(rng.random() * 5))]
    if rng.random() < 0.3:
        # Relative and tracking links, as feeds carry them; ingest makes them absolute.
        target = rng.choice(["/related/", f"https://{domain}/topics/", "https://other.example/"])
        anchor = rng.choice(words[300:3000])
        sentences[0] = f'<a href="{target}{anchor}?utm_source=feed">{anchor}</a> {sentences[0]}'
    if rng.random() < 0.2:
        sentences[-1] = f"<strong>{sentences[-1]}</strong>"
    return "<p>" + " ".join(sentences) + "</p>"


def published_at_of(n: int) -> datetime:
    return FIRST_DAY + timedelta(seconds=random.Random(n * 7919).randrange(SPAN_SECONDS))


def article_item(n: int, *, url_suffix: str = "") -> dict[str, Any]:
    """Ingest item number `n`: a body of 2-8 KB of HTML paragraphs, full attribution."""
    rng = random.Random(n)
    words, _ = vocabulary()
    publisher = publishers()[rng.choices(range(PUBLISHERS), cum_weights=_publisher_weights())[0]]
    domain = publisher["domain"]
    target = rng.randint(2_048, 8_192)
    parts: list[str] = []
    size = 0
    while size < target:
        if parts and rng.random() < 0.08:
            part = f"<h2>{_sentence(rng)[:-1]}</h2>"
        elif parts and rng.random() < 0.02:
            # Hostile markup sometimes comes through feeds; the sanitiser drops it.
            part = '<script>track("view")</script><p onclick="x()">Read more.</p>'
        else:
            part = _paragraph(rng, words, domain)
        parts.append(part)
        size += len(part)
    tags = rng.sample(tag_names(), rng.randint(0, 4))
    title_words = rng.choices(words[100:8000], k=rng.randint(5, 12))
    if tags:
        title_words.insert(rng.randrange(len(title_words)), tags[0])
    title = " ".join(title_words).capitalize()
    section = rng.choice(SECTIONS)
    published_at = published_at_of(n)
    path = f"/{section}/{published_at:%Y/%m/%d}/{'-'.join(title_words[:6])}-{n}{url_suffix}"
    query = rng.choice(["", "", "", "?utm_source=rss&utm_medium=feed", "?ref=homepage"])
    item: dict[str, Any] = {
        "title": title,
        "body_html": "\n".join(parts),
        "source_url": f"https://www.{domain}{path}{query}",
        "publisher": {"name": publisher["name"], "url": publisher["url"]},
        "authors": [
            {k: v for k, v in author.items() if v is not None}
            for author in rng.sample(publisher["authors"], rng.choice((0, 1, 1, 1, 2, 3)))
        ],
        "published_at": published_at.isoformat(),
        "language": rng.choice(LANGUAGES),
        "tags": tags,
    }
    if rng.random() < 0.25:
        item["excerpt"] = _sentence(rng)
    if rng.random() < 0.7:
        item["image"] = {
            "url": f"https://img.{domain}/{n}.jpg",
            "alt": " ".join(rng.choices(words[100:3000], k=5)),
        }
    license_ = rng.choice(LICENSES)
    if license_:
        item["license"] = license_
    return item


def search_terms(count: int, *, seed: int = 3) -> list[str]:
    """Queries a reader would type: one to three topical words (not the commonest words,
    nor words so rare they match nothing), drawn with the vocabulary's own skew."""
    rng = random.Random(seed)
    words, _ = vocabulary()
    topical = words[150:15_000]
    weights = list(accumulate(1 / (rank + 1) ** 0.6 for rank in range(len(topical))))
    return [
        " ".join(rng.choices(topical, cum_weights=weights, k=rng.choice((1, 1, 2, 2, 3))))
        for _ in range(count)
    ]
