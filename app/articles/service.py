"""Rules and queries of the articles domain: ingest (upsert on the canonical URL), reads,
and the removal a takedown carries out (and its undoing, once the blocks are lifted)."""

import difflib
import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    case,
    delete,
    event,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from app.articles.models import Article, ArticleMatchKey, ArticleTag, ArticleTombstone, Publisher
from app.articles.sanitise import excerpt_of, html_to_text, sanitise_body
from app.articles.schemas import ArticleIn, BatchItemError, BatchItemResult, IngestStatus
from app.articles.urls import match_key, match_key_host, normalise_url, source_domain
from app.dialects import DIALECTS, dialect_of
from app.errors import FieldError, InvalidInput, NotFound, ProblemError
from app.fastpath import RowReader, SingleRowRead
from app.notifications import outbox as notifications
from app.notifications.models import EventKind
from app.takedowns import audit
from app.takedowns.blocks import find_blocked

A = Article.__table__  # type: ignore[attr-defined]
P = Publisher.__table__  # type: ignore[attr-defined]
T = ArticleTag.__table__  # type: ignore[attr-defined]
MK = ArticleMatchKey.__table__  # type: ignore[attr-defined]
TS = ArticleTombstone.__table__  # type: ignore[attr-defined]
# Live articles compared when looking for the one nearest to a URL that matched none.
_NEIGHBOURS = 8
_JSON_DATETIME = TypeAdapter(datetime)

CONTENT_COLUMNS = (
    "title", "excerpt", "body_html", "body_text", "language", "image_url", "image_alt",
    "license", "authors", "tags", "source_url", "publisher_url", "published_at",
    "published_at_known", "content_hash", "publisher_id",
)  # fmt: skip
# What ingest reads of the articles it is about to store.
STORED_STATE = (
    A.c.id, A.c.canonical_url, A.c.content_hash, A.c.publisher_id, A.c.published_at,
    A.c.published_at_known, A.c.removed_at, A.c.removed_by_takedown_id,
)  # fmt: skip
# A source's clock, or its time zone, may put an article a few hours ahead of ours; a date
# further ahead is no publication date (and would pin the article to the top of every list).
MAX_PUBLISHED_AHEAD = timedelta(days=1)


class SourceBlocked(ProblemError):
    """451: a takedown blocks this URL or its domain from being republished."""

    def __init__(self, canonical_url: str, takedown_id: str | None) -> None:
        super().__init__(
            451,
            "source-blocked",
            f"Republishing {canonical_url} is blocked at the rights holder's request.",
            title="Unavailable For Legal Reasons",
            extra={"takedown_id": takedown_id},
        )


class ArticleRemoved(ProblemError):
    """451 for a removed article: names the takedown and the date, never the claimant."""

    def __init__(self, *, takedown_id: str | None, removed_at: datetime, blocked_by: str) -> None:
        super().__init__(
            451,
            "article-removed",
            "This article was removed at the request of a rights holder.",
            title="Unavailable For Legal Reasons",
            headers={"Link": f'<{blocked_by}>; rel="blocked-by"', "Cache-Control": "no-store"},
            extra={
                "takedown_id": takedown_id,
                "removed_at": _JSON_DATETIME.dump_python(removed_at, mode="json"),
            },
        )


@dataclass
class PreparedArticle:
    """An ingest body turned into column values: sanitised, normalised, hashed."""

    canonical_url: str
    match_key: str
    source_domain: str
    publisher_name: str
    publisher_url: str | None
    # The columns ingest writes as sent, with `content_hash` of them and of the date sent.
    values: dict[str, Any]
    tags: list[str]
    published_at: datetime | None
    # What the content hash covers besides the date.
    fingerprint: dict[str, Any]

    def dated_over(self, row: Any) -> tuple[datetime, bool, str]:
        """(published_at, published_at_known, content_hash) of this article stored over
        `row`, its earlier version: sent without a date, it keeps the row's, and the hash (the
        ETag of its reads) covers the date the reads then show."""
        if self.published_at is not None:
            return self.published_at, True, self.values["content_hash"]
        if not row.published_at_known:
            return row.published_at, False, self.values["content_hash"]
        return row.published_at, True, _content_hash(self.fingerprint, row.published_at)


def _content_hash(fingerprint: dict[str, Any], published_at: datetime | None) -> str:
    """The hash of everything a read shows that ingest can change: an article's ETag."""
    dated = {**fingerprint, "published_at": published_at.isoformat() if published_at else None}
    return hashlib.sha256(
        json.dumps(dated, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def slug_for(title: str, canonical_url: str) -> str:
    """A readable, stable, unique slug: the title's words plus a hash of the URL."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:80].rstrip("-")
    suffix = hashlib.sha256(canonical_url.encode()).hexdigest()[:12]
    return f"{words}-{suffix}" if words else suffix


TOMBSTONE_PREFIX = "~"


def tombstone_slug(slug: str) -> str:
    """What a removed article keeps of its slug: a hash, so that the title's words go with
    the content while a lookup of the old slug still finds the tombstone (451). `~` is a
    character `slug_for` never writes, so no live slug is ever one."""
    return TOMBSTONE_PREFIX + hashlib.sha256(slug.encode()).hexdigest()


def prepare_article(data: ArticleIn, *, now: datetime | None = None) -> PreparedArticle:
    """Everything ingest stores, computed without touching the database. Given the clock's
    `now` (every ingest path passes it), a publication date more than MAX_PUBLISHED_AHEAD
    ahead of it is refused."""
    published_at = data.published_at
    if now is not None and published_at is not None and published_at > now + MAX_PUBLISHED_AHEAD:
        raise InvalidInput(
            [FieldError(field="published_at", message="is more than a day ahead of now")]
        )
    canonical_url = normalise_url(data.source_url)
    body_html = sanitise_body(data.body_html, base_url=canonical_url)
    body_text = html_to_text(body_html)
    if not body_text and "<img" not in body_html:
        raise InvalidInput([FieldError(field="body_html", message="has no content once sanitised")])
    authors = [author.model_dump() for author in data.authors]
    tags = sorted(set(data.tags))
    values: dict[str, Any] = {
        "title": data.title,
        "excerpt": data.excerpt or excerpt_of(body_text),
        "body_html": body_html,
        "body_text": body_text,
        "language": data.language.lower() if data.language else None,
        "image_url": data.image.url if data.image else None,
        "image_alt": data.image.alt if data.image else None,
        "license": data.license,
        "authors": authors,
        "tags": tags,
        "source_url": data.source_url,
    }
    fingerprint = {**values, "publisher": [data.publisher.name, data.publisher.url]}
    values["publisher_url"] = data.publisher.url
    values["content_hash"] = _content_hash(fingerprint, data.published_at)
    return PreparedArticle(
        canonical_url=canonical_url,
        match_key=match_key(canonical_url),
        source_domain=source_domain(canonical_url),
        publisher_name=data.publisher.name,
        publisher_url=data.publisher.url,
        values=values,
        tags=tags,
        published_at=data.published_at,
        fingerprint=fingerprint,
    )


# Ingest's statements, built once (per dialect where they differ): a feed's poll runs each
# of them, and building and cache-keying them cost more than some of them take to run.
_PUBLISHERS_NAMED = select(P.c.id, P.c.name).where(P.c.name.in_(bindparam("names", expanding=True)))
_STORED_STATE_OF = select(*STORED_STATE).where(
    A.c.canonical_url.in_(bindparam("urls", expanding=True))
)
_NEW_PUBLISHERS = {
    dialect: dialect.insert(P).on_conflict_do_nothing(index_elements=["name"])
    for dialect in DIALECTS.values()
}
_NEW_ARTICLES = {
    dialect: dialect.insert(A)
    .on_conflict_do_nothing(index_elements=["canonical_url"])
    .returning(A.c.id, A.c.canonical_url, sort_by_parameter_order=True)
    for dialect in DIALECTS.values()
}


def ensure_publishers(
    *, session: Session, articles: Sequence[PreparedArticle], now: datetime
) -> dict[str, int]:
    """Ids of the articles' publishers by name, creating missing ones with the first homepage
    sent for them. An existing publisher's homepage is never changed here: any ingest key
    (or feed) could otherwise rewrite it for every article of that publisher."""
    homepages: dict[str, str | None] = {}
    for article in articles:
        if homepages.get(article.publisher_name) is None:
            homepages[article.publisher_name] = article.publisher_url
    ids = _publisher_ids(session, list(homepages))
    missing = [name for name in homepages if name not in ids]
    if missing:
        session.execute(
            _NEW_PUBLISHERS[dialect_of(session)],
            [
                {"name": name, "url": homepages[name], "article_count": 0, "created_at": now}
                for name in missing
            ],
        )
        ids.update(_publisher_ids(session, missing))
    return ids


def _publisher_ids(session: Session, names: Sequence[str]) -> dict[str, int]:
    return {row.name: row.id for row in session.execute(_PUBLISHERS_NAMED, {"names": names})}


def _adjust_counts(session: Session, deltas: Counter[int]) -> None:
    """Change publishers' live-article counts when the transaction commits."""
    pending: Counter[int] = session.info.setdefault(_PENDING_COUNTS, Counter())
    pending.update(deltas)


# Counts change in the last statement before COMMIT, once per transaction and in publisher
# id order: a publisher's row is then locked only for the commit itself, so workers and
# ingests sharing publishers neither wait for one another's whole transaction nor deadlock.
_PENDING_COUNTS = "byline_publisher_count_deltas"
_SAVED_COUNTS = "byline_publisher_count_deltas_by_savepoint"


@event.listens_for(OrmSession, "before_commit")
def _apply_counts(session: OrmSession) -> None:
    if session.in_nested_transaction():
        # A savepoint released: its changes stay pending for the enclosing transaction.
        session.info.get(_SAVED_COUNTS, {}).pop(session.get_nested_transaction(), None)
        return
    pending: Counter[int] | None = session.info.pop(_PENDING_COUNTS, None)
    changes = [{"pid": pid, "delta": n} for pid, n in sorted((pending or {}).items()) if n]
    if changes:
        session.execute(
            update(P)
            .where(P.c.id == bindparam("pid"))
            .values(article_count=P.c.article_count + bindparam("delta")),
            changes,
        )


@event.listens_for(OrmSession, "after_transaction_create")
def _remember_counts(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested:
        saved: Counter[int] = Counter(session.info.get(_PENDING_COUNTS, ()))
        session.info.setdefault(_SAVED_COUNTS, {})[transaction] = saved


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_counts(session: OrmSession, transaction: SessionTransaction) -> None:
    """A rolled-back transaction's changes go with it (a savepoint's: back to what was
    pending when it began)."""
    if transaction.nested:
        saved = session.info.get(_SAVED_COUNTS, {}).pop(transaction, None)
        if saved is not None:  # not released: rolled back
            session.info[_PENDING_COUNTS] = saved
    elif transaction.parent is None:
        session.info.pop(_PENDING_COUNTS, None)


def _replace_tags(
    session: Session, article_ids: Sequence[int], tags_by_id: dict[int, list[str]]
) -> None:
    if article_ids:
        session.execute(delete(T).where(T.c.article_id.in_(article_ids)))
    rows = [{"article_id": aid, "tag": tag} for aid, tags in tags_by_id.items() for tag in tags]
    if rows:
        session.execute(T.insert(), rows)


def new_article_row(
    article: PreparedArticle, *, publisher_id: int, now: datetime
) -> dict[str, Any]:
    """The `articles` row ingest inserts for an article it sees for the first time."""
    return {
        **article.values,
        "canonical_url": article.canonical_url,
        "source_domain": article.source_domain,
        "slug": slug_for(article.values["title"], article.canonical_url),
        "publisher_id": publisher_id,
        "published_at": article.published_at or now,
        "published_at_known": article.published_at is not None,
        "first_seen_at": now,
        "updated_at": now,
    }


@dataclass
class Stored:
    """What ingest did with one article."""

    status: IngestStatus
    article_id: int


def store_articles(
    *, session: Session, articles: Sequence[PreparedArticle], now: datetime
) -> list[Stored]:
    """Upsert prepared articles on their canonical URL, in bulk. Raises SourceBlocked for the
    first blocked one; callers that want per-item answers filter with `blocked_urls` first."""
    publisher_ids = ensure_publishers(session=session, articles=articles, now=now)
    urls = [a.canonical_url for a in articles]
    existing = {row.canonical_url: row for row in session.execute(_STORED_STATE_OF, {"urls": urls})}
    results: dict[str, Stored] = {}
    # Sorted, so concurrent batches take row locks in one order and cannot deadlock.
    fresh = sorted(
        (a for a in articles if a.canonical_url not in existing), key=lambda a: a.canonical_url
    )
    count_deltas: Counter[int] = Counter()
    if fresh:
        rows = [
            new_article_row(a, publisher_id=publisher_ids[a.publisher_name], now=now) for a in fresh
        ]
        inserted = session.execute(_NEW_ARTICLES[dialect_of(session)], rows).all()
        created = {row.canonical_url: row.id for row in inserted}
        _replace_tags(
            session,
            [],
            {created[a.canonical_url]: a.tags for a in fresh if a.canonical_url in created},
        )
        if created:
            session.execute(
                MK.insert(),
                [
                    {"article_id": created[a.canonical_url], "match_key": a.match_key}
                    for a in fresh
                    if a.canonical_url in created
                ],
            )
        for a in fresh:
            if a.canonical_url in created:
                results[a.canonical_url] = Stored("created", created[a.canonical_url])
                count_deltas[publisher_ids[a.publisher_name]] += 1
        lost_race = [a.canonical_url for a in fresh if a.canonical_url not in created]
        if lost_race:
            # Another transaction inserted these first; treat them as updates of its rows.
            for row in session.execute(_STORED_STATE_OF, {"urls": lost_race}):
                existing[row.canonical_url] = row
    changed: list[dict[str, Any]] = []
    changed_tags: dict[int, list[str]] = {}
    removed_rows = [
        (a, existing[a.canonical_url])
        for a in articles
        if a.canonical_url in existing
        and a.canonical_url not in results
        and existing[a.canonical_url].removed_at is not None
    ]
    if removed_rows:
        for a, row in removed_rows:
            results[a.canonical_url] = Stored("updated", row.id)
        count_deltas.update(_restore(session, removed_rows, publisher_ids=publisher_ids, now=now))
    for a in articles:
        current = existing.get(a.canonical_url)
        if current is None or a.canonical_url in results:
            continue
        row = current
        publisher_id = publisher_ids[a.publisher_name]
        published_at, published_at_known, content_hash = a.dated_over(row)
        if row.content_hash == content_hash and row.publisher_id == publisher_id:
            results[a.canonical_url] = Stored("unchanged", row.id)
            continue
        changed.append(
            {
                **{f"v_{k}": v for k, v in a.values.items()},
                "v_publisher_id": publisher_id,
                "v_published_at": published_at,
                "v_published_at_known": published_at_known,
                "v_content_hash": content_hash,
                "v_updated_at": now,
                "aid": row.id,
            }
        )
        changed_tags[row.id] = a.tags
        if row.publisher_id != publisher_id:
            count_deltas[row.publisher_id] -= 1
            count_deltas[publisher_id] += 1
        results[a.canonical_url] = Stored("updated", row.id)
    if changed:
        changed.sort(key=lambda values: values["aid"])
        columns = [*CONTENT_COLUMNS, "updated_at"]
        # Only live rows: a removal that committed since they were read keeps its tombstone.
        session.execute(
            update(A)
            .where(A.c.id == bindparam("aid"), A.c.removed_at.is_(None))
            .values({c: bindparam(f"v_{c}") for c in columns}),
            changed,
        )
        _replace_tags(session, list(changed_tags), changed_tags)
    _adjust_counts(session, count_deltas)
    notifications.publish_article_changes(
        session=session,
        changes=[
            (EventKind(f"article.{stored.status}"), stored.article_id, url)
            for url, stored in results.items()
            if stored.status != "unchanged"
        ],
        now=now,
    )
    return [results[a.canonical_url] for a in articles]


def _restore(
    session: Session,
    rows: Sequence[tuple[PreparedArticle, Any]],
    *,
    publisher_ids: dict[str, int],
    now: datetime,
) -> Counter[int]:
    """Publish removed articles again, once no block holds their URL or domain any longer
    (an operator lifted them: a wrongful removal undone). The article keeps its id and
    `first_seen_at`; its tombstone stays, marked restored, and the audit records it.
    Returns the publishers' article count changes."""
    # Checked again here, in the writing transaction: a block is always committed before
    # the removal it leads to, so a removal seen above has its blocks visible now.
    blocked = find_blocked(
        session=session, match_keys={a.canonical_url: a.match_key for a, _ in rows}
    )
    for a, _ in rows:
        if a.canonical_url in blocked:
            raise SourceBlocked(a.canonical_url, blocked[a.canonical_url].takedown_id)
    deltas: Counter[int] = Counter()
    for a, row in sorted(rows, key=lambda pair: pair[1].id):
        publisher_id = publisher_ids[a.publisher_name]
        published_at, published_at_known, content_hash = a.dated_over(row)
        restored = session.execute(
            update(A)
            .where(A.c.id == row.id, A.c.removed_at.is_not(None))
            .values(
                {
                    **a.values,
                    "publisher_id": publisher_id,
                    "published_at": published_at,
                    "published_at_known": published_at_known,
                    "content_hash": content_hash,
                    "slug": slug_for(a.values["title"], a.canonical_url),
                    # Published again as it was, it answers as it did before the removal
                    # (the same ETag), update time included.
                    "updated_at": case(
                        (A.c.content_hash == content_hash, A.c.updated_at),
                        else_=literal(now, A.c.updated_at.type),
                    ),
                    "removed_at": None,
                    "removed_by_takedown_id": None,
                }
            )
        )
        if restored.rowcount != 1:  # type: ignore[attr-defined]
            continue
        session.execute(
            update(TS)
            .where(TS.c.article_id == row.id, TS.c.restored_at.is_(None))
            .values(restored_at=now)
        )
        _replace_tags(session, [row.id], {row.id: a.tags})
        deltas[publisher_id] += 1
        audit.record(
            session=session,
            action=audit.Action.restored,
            actor=audit.INGEST,
            now=now,
            takedown_id=row.removed_by_takedown_id,
            article_id=row.id,
            reason="published again: no block holds its URL or domain any longer",
        )
    return deltas


def ingest_article(*, session: Session, data: ArticleIn, now: datetime) -> Stored:
    """Store one article: created, updated or unchanged. Blocked URLs raise SourceBlocked;
    a removed article whose blocks were all lifted is published again."""
    prepared = prepare_article(data, now=now)
    blocked = find_blocked(session=session, match_keys={prepared.canonical_url: prepared.match_key})
    if prepared.canonical_url in blocked:
        raise SourceBlocked(prepared.canonical_url, blocked[prepared.canonical_url].takedown_id)
    return store_articles(session=session, articles=[prepared], now=now)[0]


def _item_errors(exc: ValidationError | InvalidInput) -> list[BatchItemError]:
    if isinstance(exc, InvalidInput):
        return [BatchItemError(field=e.field, message=e.message) for e in exc.errors or []]
    return [
        BatchItemError(
            field=".".join(str(part) for part in error["loc"]) or "item",
            message=str(error["msg"]).removeprefix("Value error, "),
        )
        for error in exc.errors()
    ]


def ingest_batch(
    *, session: Session, items: Sequence[object], now: datetime
) -> list[BatchItemResult]:
    """Store many articles in one transaction; each item is answered on its own (created,
    updated, unchanged, invalid or blocked) and a bad item never sinks the others."""
    results: dict[int, BatchItemResult] = {}
    prepared: dict[int, PreparedArticle] = {}
    for index, raw in enumerate(items):
        try:
            prepared[index] = prepare_article(ArticleIn.model_validate(raw), now=now)
        except (ValidationError, InvalidInput) as exc:
            results[index] = BatchItemResult(
                index=index, status="invalid", errors=_item_errors(exc)
            )
        except ValueError as exc:
            results[index] = BatchItemResult(
                index=index,
                status="invalid",
                errors=[BatchItemError(field="source_url", message=str(exc))],
            )
    blocked = find_blocked(
        session=session, match_keys={p.canonical_url: p.match_key for p in prepared.values()}
    )
    # The same URL more than once in a batch: each copy is stored in its turn, as if the
    # copies had been sent one after the other (created, then unchanged or updated). Turn n
    # holds the n-th copy of each URL; nearly every batch is a single turn.
    turns: list[dict[int, PreparedArticle]] = []
    copies: Counter[str] = Counter()
    for index, article in prepared.items():
        if article.canonical_url in blocked:
            results[index] = BatchItemResult(index=index, status="blocked")
            continue
        turn = copies[article.canonical_url]
        copies[article.canonical_url] += 1
        if turn == len(turns):
            turns.append({})
        turns[turn][index] = article
    for turn_articles in turns:
        stored = store_articles(session=session, articles=list(turn_articles.values()), now=now)
        for index, outcome in zip(turn_articles, stored, strict=True):
            results[index] = BatchItemResult(
                index=index, status=outcome.status, id=outcome.article_id
            )
    return [results[index] for index in range(len(items))]


# Reads ---------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    A.c.id, A.c.slug, A.c.title, A.c.excerpt, A.c.language, A.c.tags, A.c.image_url, A.c.image_alt,
    A.c.published_at, A.c.updated_at, A.c.source_url, A.c.canonical_url, A.c.source_domain,
    A.c.authors, A.c.license, A.c.first_seen_at, A.c.removed_at, A.c.removed_by_takedown_id,
    A.c.content_hash, P.c.name.label("publisher_name"), A.c.publisher_url,
    A.c.published_at_known,
)  # fmt: skip


def _select_articles(*columns: Any) -> Select[Any]:
    return select(*columns).select_from(A.join(P, P.c.id == A.c.publisher_id))


def _live_or_raise(row: Any, blocked_by: str) -> Any:
    if row is None:
        raise NotFound("No such article.")
    if row.removed_at is not None:
        raise ArticleRemoved(
            takedown_id=row.removed_by_takedown_id, removed_at=row.removed_at, blocked_by=blocked_by
        )
    return row


# Built once: constructing and cache-keying a 22-column join cost more than running it.
_ARTICLE_BY_ID = SingleRowRead(_select_articles(*SUMMARY_COLUMNS, A.c.body_html), A.c.id)
_ARTICLE_BY_SLUG = SingleRowRead(_select_articles(*SUMMARY_COLUMNS, A.c.body_html), A.c.slug)


def get_article(*, session: Session, article_id: int, blocked_by: str) -> Row[Any]:
    """One article with its body as this session sees it (ingest reads back its own write);
    404 when unknown, 451 when removed."""
    row = session.execute(_ARTICLE_BY_ID.statement, {"key": article_id}).first()
    return _live_or_raise(row, blocked_by)


async def read_article(*, rows: RowReader, article_id: int, blocked_by: str) -> Any:
    """One article with its body for the read API, in one indexed read outside any session
    (SingleRowRead); 404 when unknown, 451 when removed."""
    return _live_or_raise(await rows.first(_ARTICLE_BY_ID, article_id), blocked_by)


async def read_article_by_slug(*, rows: RowReader, slug: str, blocked_by: str) -> Any:
    """One article by its slug, as read_article; 404 when unknown, 451 when removed (a
    removed article keeps only a hash of its slug)."""
    row = await rows.first(_ARTICLE_BY_SLUG, slug)
    if row is None:
        row = await rows.first(_ARTICLE_BY_SLUG, tombstone_slug(slug))
    return _live_or_raise(row, blocked_by)


def get_article_by_slug(*, session: Session, slug: str, blocked_by: str) -> Row[Any]:
    """One article by its slug, as this session sees it; as read_article_by_slug."""
    row = session.execute(_ARTICLE_BY_SLUG.statement, {"key": slug}).first()
    if row is None:
        key = tombstone_slug(slug)
        row = session.execute(_ARTICLE_BY_SLUG.statement, {"key": key}).first()
    return _live_or_raise(row, blocked_by)


@dataclass(frozen=True)
class ArticleFilters:
    publisher: str | None = None
    domain: str | None = None
    tag: str | None = None
    language: str | None = None
    published_after: datetime | None = None
    published_before: datetime | None = None
    # A registrable domain: articles whose source is it or any of its subdomains (what a
    # publisher key may list), where `domain` is one host exactly.
    within_domain: str | None = None


# Built once, like the single-article reads; filters are added to a copy per request.
_SUMMARIES = _select_articles(*SUMMARY_COLUMNS)


def _filtered(query: Select[Any], filters: ArticleFilters) -> Select[Any]:
    query = query.where(A.c.removed_at.is_(None))
    if filters.publisher is not None:
        query = query.where(P.c.name == filters.publisher)
    if filters.domain is not None:
        domain = filters.domain.lower().removeprefix("www.")
        query = query.where(A.c.source_domain == domain)
    if filters.within_domain is not None:
        query = query.where(_in_domain(filters.within_domain))
    if filters.tag is not None:
        tagged = select(T.c.article_id).where(T.c.tag == filters.tag.lower())
        query = query.where(A.c.id.in_(tagged))
    if filters.language is not None:
        query = query.where(A.c.language == filters.language.lower())
    if filters.published_after is not None:
        query = query.where(A.c.published_at >= filters.published_after)
    if filters.published_before is not None:
        query = query.where(A.c.published_at < filters.published_before)
    return query


def list_articles(
    *,
    session: Session | Connection,
    filters: ArticleFilters,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Row[Any]]:
    """Newest first, keyset-paged on (published_at, id): stable while articles arrive."""
    query = _filtered(_SUMMARIES, filters)
    if after is not None:
        # A row-value comparison: both engines seek the (published_at, id) index to it, where
        # the equivalent `a < x OR (a = x AND id < y)` made PostgreSQL filter every row before.
        query = query.where(tuple_(A.c.published_at, A.c.id) < after)
    query = query.order_by(A.c.published_at.desc(), A.c.id.desc()).limit(limit)
    return list(session.execute(query).all())


def live_article_bodies(
    *, session: Session | Connection, article_ids: Sequence[int]
) -> dict[int, str]:
    """The sanitised bodies of those of the given articles that are live, by id.

    A page of a list reads summaries (list_articles, or a search); a feed then reads the
    bodies of its page by primary key rather than widening every list's rows. An article
    removed in between is left out."""
    if not article_ids:
        return {}
    query = select(A.c.id, A.c.body_html).where(
        A.c.id.in_(sorted(set(article_ids))), A.c.removed_at.is_(None)
    )
    return {row.id: row.body_html for row in session.execute(query)}


def list_publishers(*, session: Session) -> list[Row[Any]]:
    """Publishers with their live article counts, largest first."""
    return list(
        session.execute(
            select(P.c.id, P.c.name, P.c.url, P.c.article_count).order_by(
                P.c.article_count.desc(), P.c.name
            )
        ).all()
    )


# For takedowns ---------------------------------------------------------------------------


def find_articles_by_match_keys(*, session: Session, keys: Iterable[str]) -> dict[str, list[int]]:
    """Ids of articles (live or removed) by matching key; several articles may share one
    (the same story ingested from its http and https, or www and bare, addresses)."""
    wanted = sorted(set(keys))
    found: dict[str, list[int]] = {}
    if not wanted:
        return found
    rows = session.execute(
        select(MK.c.match_key, MK.c.article_id)
        .where(MK.c.match_key.in_(wanted))
        .order_by(MK.c.article_id)
    )
    for row in rows:
        found.setdefault(row.match_key, []).append(row.article_id)
    return found


def closest_live_article(*, session: Session, key: str) -> int | None:
    """The live article on the same host whose matching key is nearest to `key` (its
    neighbours in key order, compared by similarity): what a claimant probably meant by a
    URL that matched nothing. None when we hold nothing live on that host."""
    host_prefix = match_key_host(key) + "/"
    # '0' sorts right after '/': keys of this host lie in [host/, host0).
    host_end = match_key_host(key) + "0"

    def neighbours(before: bool) -> list[Any]:
        query = (
            select(MK.c.match_key, MK.c.article_id)
            .join(A, A.c.id == MK.c.article_id)
            .where(A.c.removed_at.is_(None))
        )
        if before:
            query = query.where(MK.c.match_key < key, MK.c.match_key >= host_prefix)
            query = query.order_by(MK.c.match_key.desc())
        else:
            query = query.where(MK.c.match_key >= key, MK.c.match_key < host_end)
            query = query.order_by(MK.c.match_key)
        return list(session.execute(query.limit(_NEIGHBOURS // 2)))

    candidates = neighbours(before=True) + neighbours(before=False)
    if not candidates:
        return None
    best = max(
        candidates,
        key=lambda row: (
            difflib.SequenceMatcher(None, key, row.match_key).ratio(),
            -row.article_id,
        ),
    )
    return int(best.article_id)


def find_articles_by_slugs(*, session: Session, slugs: Iterable[str]) -> dict[str, int]:
    """Ids of articles by slug, removed ones (which keep a hash of theirs) included."""
    slugs = list(set(slugs))
    if not slugs:
        return {}
    by_tombstone = {tombstone_slug(slug): slug for slug in slugs}
    return {
        by_tombstone.get(row.slug, row.slug): row.id
        for row in session.execute(
            select(A.c.slug, A.c.id).where(A.c.slug.in_([*slugs, *by_tombstone]))
        )
    }


def _in_domain(domain: str) -> Any:
    """Articles whose source is the domain or one of its subdomains."""
    domain = domain.lower().removeprefix("www.")
    return or_(
        A.c.source_domain == domain,
        A.c.source_domain.like("%." + domain.replace("%", "").replace("_", r"\_"), escape="\\"),
    )


def find_live_article_ids_in_domain(*, session: Session, domain: str) -> list[int]:
    """Live articles whose source is the domain or one of its subdomains."""
    query = select(A.c.id).where(A.c.removed_at.is_(None), _in_domain(domain))
    return list(session.scalars(query.order_by(A.c.id)))


@dataclass(frozen=True)
class ArticleFacts:
    """What takedown policy needs to know of an article."""

    id: int
    canonical_url: str
    source_domain: str
    first_seen_at: datetime
    removed_at: datetime | None


def article_facts(*, session: Session, article_ids: Iterable[int]) -> dict[int, ArticleFacts]:
    """Facts of the given articles (unknown ids are left out)."""
    ids = list(set(article_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(
            A.c.id, A.c.canonical_url, A.c.source_domain, A.c.first_seen_at, A.c.removed_at
        ).where(A.c.id.in_(ids))
    )
    return {row.id: ArticleFacts(**row._mapping) for row in rows}


def remove_articles(
    *, session: Session, removals: Mapping[str, Sequence[int]], now: datetime
) -> dict[str, set[int]]:
    """Delete the content of {takedown id: article ids} and keep the tombstones (id,
    canonical URL, publisher, first seen, content hash, takedown; the slug only as a hash,
    so no word of the title stays); the ids removed now, by takedown (an article removed
    already is left as it is). 404 for an unknown id.

    Publisher counts change once, at the end and in publisher id order, as batch ingest
    changes them: a scheduler's batch and an ingest sharing publishers cannot deadlock."""
    # In the order given: an article named by two requests is removed by the first, and
    # the second finds it removed already. The slug's hash is computed by the database, so
    # the statement is the same for every batch.
    tombstone = literal(TOMBSTONE_PREFIX) + dialect_of(session).sha256_hex(A.c.slug)
    removed: dict[str, set[int]] = {}
    gone: list[Any] = []
    for takedown_id, article_ids in removals.items():
        rows = session.execute(
            update(A)
            .where(A.c.id.in_(sorted(set(article_ids))), A.c.removed_at.is_(None))
            .values(
                slug=tombstone,
                title=None,
                excerpt=None,
                body_html=None,
                body_text=None,
                image_url=None,
                image_alt=None,
                authors=None,
                tags=None,
                license=None,
                removed_at=now,
                removed_by_takedown_id=takedown_id,
            )
            .returning(
                A.c.id,
                A.c.publisher_id,
                A.c.canonical_url,
                A.c.first_seen_at,
                A.c.content_hash,
            )
        ).all()
        removed[takedown_id] = {row.id for row in rows}
        gone.extend((takedown_id, row) for row in rows)
    named = {article_id for article_ids in removals.values() for article_id in article_ids}
    not_removed = named - {row.id for _, row in gone}
    if not_removed:
        known = session.scalars(select(A.c.id).where(A.c.id.in_(sorted(not_removed))))
        unknown = not_removed - set(known)
        if unknown:
            raise NotFound(f"No article with id {min(unknown)}.")
    if gone:
        session.execute(
            TS.insert(),
            [
                {
                    "article_id": row.id,
                    "canonical_url": row.canonical_url,
                    "publisher_id": row.publisher_id,
                    "first_seen_at": row.first_seen_at,
                    "content_hash": row.content_hash,
                    "takedown_id": takedown_id,
                    "removed_at": now,
                }
                for takedown_id, row in gone
            ],
        )
        session.execute(delete(T).where(T.c.article_id.in_(sorted(row.id for _, row in gone))))
        deltas: Counter[int] = Counter()
        for _, row in gone:
            deltas[row.publisher_id] -= 1
        _adjust_counts(session, deltas)
        notifications.publish_articles_removed(
            session=session,
            removed=[(row.id, row.canonical_url, takedown_id) for takedown_id, row in gone],
            now=now,
        )
    return removed
