"""Full-text search behind one function: FTS5 on SQLite, tsvector + GIN on PostgreSQL.

User input never reaches SQL as text: it is a bound parameter, and on SQLite it is reduced to
quoted words first so that FTS5 query syntax cannot be injected.

Ranking. SQLite ranks every match (FTS5's bm25 reads the index, not the rows: cheap per
match). PostgreSQL searches article_search (migration 0008: the live articles' dates and
tsvectors, narrow rows apart from the wide article rows) and ts_rank_cd reads each match's
stored tsvector (several KB, out of line): ranking every match of a common word at a million
articles is far too slow for a page (bench/README.md). So PostgreSQL ranks window by
window: the newest RANKED_WINDOW matches (ties on the oldest date included) best first, then
the next RANKED_WINDOW older ones best first, and so on. The window bounds are dates fixed when a
window is first entered and carried in the cursor, so paging never repeats or skips an
article, whatever arrives meanwhile."""

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    cast,
    column,
    func,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION
from sqlmodel import Session

from app.articles.service import SUMMARY_COLUMNS, A, ArticleFilters, P, _filtered, _select_articles

_WORD = re.compile(r"\w+", re.UNICODE)
_FTS = table("articles_fts", column("rowid"), column("rank"))
_SEARCH = table(
    "article_search", column("article_id"), column("published_at"), column("search_vector")
)
MAX_QUERY_WORDS = 16
# Matches ranked together on PostgreSQL: ranking one reads and decompresses its tsvector, so
# the window bounds what one page of a search costs (figures: bench/README.md).
RANKED_WINDOW = 500


def fts5_query(q: str) -> str | None:
    """`hostile "query" OR x*` -> `"hostile" "query" "OR" "x"`: every word literal, all required."""
    words = _WORD.findall(q)[:MAX_QUERY_WORDS]
    return " ".join(f'"{word}"' for word in words) or None


# The start of the oldest window: before any article (PostgreSQL's timestamps go further back).
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SearchWindow:
    """The matches published in [start, end) (end None: unbounded), ranked together."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class Match:
    row: Row[Any]
    score: float
    window: SearchWindow | None  # None: ranked over all matches (SQLite)


def search_articles(
    *,
    session: Session | Connection,
    q: str,
    filters: ArticleFilters,
    after: tuple[float, int] | None,
    window: SearchWindow | None,
    limit: int,
) -> list[Match]:
    """Articles matching `q`, best first (ties newest id first), keyset-paged on (score, id)
    after `after`; on PostgreSQL window by window, from `window` (None: the newest)."""
    bind = session.get_bind() if isinstance(session, Session) else session
    if bind.dialect.name == "postgresql":
        return _search_postgres(session, q, filters, after, window, limit)
    return _search_sqlite(session, q, filters, after, limit)


def _after(score: Any, article_id: Any, after: tuple[float, int] | None) -> list[Any]:
    if after is None:
        return []
    after_score, after_id = after
    return [or_(score < after_score, and_(score == after_score, article_id < after_id))]


# PostgreSQL ------------------------------------------------------------------------------


def _search_postgres(
    session: Session | Connection,
    q: str,
    filters: ArticleFilters,
    after: tuple[float, int] | None,
    window: SearchWindow | None,
    limit: int,
) -> list[Match]:
    query_ts = func.websearch_to_tsquery("english", bindparam("q", q))
    candidates = _postgres_candidates(query_ts, filters)
    matches: list[Match] = []
    end = None
    while True:
        if window is None:
            rows, window = _open_window(session, candidates, query_ts, end, limit)
        else:
            rows = _rank(session, _in_window(candidates, window), query_ts, after, limit)
        matches += [Match(row, float(row.score), window) for row in rows]
        limit -= len(rows)
        if limit == 0 or window.start == EARLIEST:
            return matches
        # This window is done: the page goes on with the best of the next older one.
        end, window, after = window.start, None, None


def _postgres_candidates(query_ts: Any, filters: ArticleFilters) -> Select[Any]:
    """(id, published_at, vector) of the live articles matching, from article_search alone
    unless a filter is on a column only `articles` holds."""
    vector: Any = _SEARCH.c.search_vector
    candidates = select(
        _SEARCH.c.article_id.label("id"), _SEARCH.c.published_at, vector.label("vector")
    ).where(vector.op("@@")(query_ts))
    if filters.published_after is not None:
        candidates = candidates.where(_SEARCH.c.published_at >= filters.published_after)
    if filters.published_before is not None:
        candidates = candidates.where(_SEARCH.c.published_at < filters.published_before)
    by_article = replace(filters, published_after=None, published_before=None)
    if by_article == ArticleFilters():
        return candidates
    joined = _SEARCH.join(A, A.c.id == _SEARCH.c.article_id)
    if filters.publisher is not None:
        joined = joined.join(P, P.c.id == A.c.publisher_id)
    return _filtered(candidates.select_from(joined), by_article)


def _open_window(
    session: Session | Connection,
    candidates: Select[Any],
    query_ts: Any,
    end: datetime | None,
    limit: int,
) -> tuple[list[Row[Any]], SearchWindow]:
    """The best of a new window, the RANKED_WINDOW newest matches published before `end`
    (all matches of the oldest date among them included), and that window: it starts at
    that date, or at EARLIEST when fewer remained."""
    if end is not None:
        candidates = candidates.where(_SEARCH.c.published_at < end)
    newest = candidates.order_by(_SEARCH.c.published_at.desc()).fetch(RANKED_WINDOW, with_ties=True)
    rows = _rank(session, newest, query_ts, None, limit, describe_window=True)
    if not rows or rows[0].window_size < RANKED_WINDOW:
        return rows, SearchWindow(EARLIEST, end)
    return rows, SearchWindow(rows[0].window_start, end)


def _in_window(candidates: Select[Any], window: SearchWindow) -> Select[Any]:
    if window.start != EARLIEST:
        candidates = candidates.where(_SEARCH.c.published_at >= window.start)
    if window.end is not None:
        candidates = candidates.where(_SEARCH.c.published_at < window.end)
    return candidates


def _rank(
    session: Session | Connection,
    candidates: Select[Any],
    query_ts: Any,
    after: tuple[float, int] | None,
    limit: int,
    *,
    describe_window: bool = False,
) -> list[Row[Any]]:
    """The best `limit` of the candidates after `after`. Each candidate is ranked once (a
    MATERIALIZED CTE: inlined, the planner ranks again for the cursor's condition), and only
    the page's rows are joined for output."""
    found = candidates.subquery("found")
    columns: list[Any] = [
        found.c.id,
        # As double precision: the cursor's score must compare equal to it once parsed back
        # (the real that ts_rank_cd returns came back from the driver rounded to 7 digits).
        cast(func.ts_rank_cd(found.c.vector, query_ts), DOUBLE_PRECISION).label("score"),
    ]
    if describe_window:
        columns += [
            func.min(found.c.published_at).over().label("window_start"),
            func.count().over().label("window_size"),
        ]
    ranked = select(*columns).cte("ranked").prefix_with("MATERIALIZED")
    best = (
        select(ranked)
        .where(*_after(ranked.c.score, ranked.c.id, after))
        .order_by(ranked.c.score.desc(), ranked.c.id.desc())
        .limit(limit)
        .subquery("best")
    )
    extra = [best.c.window_start, best.c.window_size] if describe_window else []
    query = (
        select(*SUMMARY_COLUMNS, best.c.score, *extra)
        .select_from(best.join(A, A.c.id == best.c.id).join(P, P.c.id == A.c.publisher_id))
        .order_by(best.c.score.desc(), best.c.id.desc())
    )
    return list(session.execute(query).all())


# SQLite ----------------------------------------------------------------------------------


def _search_sqlite(
    session: Session | Connection,
    q: str,
    filters: ArticleFilters,
    after: tuple[float, int] | None,
    limit: int,
) -> list[Match]:
    fts_match = fts5_query(q)
    if fts_match is None:
        return []
    matching = text("articles_fts MATCH :match").bindparams(match=fts_match)
    score = -_FTS.c.rank
    rows: list[Row[Any]] | None = None
    if filters == ArticleFilters():
        rows = _best_from_index(session, matching, after, limit)
    if rows is None:
        query = _filtered(
            _select_articles(*SUMMARY_COLUMNS, score.label("score"))
            .join(_FTS, _FTS.c.rowid == A.c.id)
            .where(matching),
            filters,
        )
        query = query.where(*_after(score, A.c.id, after))
        rows = list(session.execute(query.order_by(score.desc(), A.c.id.desc()).limit(limit)))
    return [Match(row, float(row.score), None) for row in rows]


def _best_from_index(
    session: Session | Connection,
    matching: Any,
    after: tuple[float, int] | None,
    limit: int,
) -> list[Row[Any]] | None:
    """Without filters, the page's rows are chosen in the FTS index alone and only they are
    read from `articles` (joined first, every match's row was read, several overflow pages
    each). None if any chosen row turned out removed (a removal clears the indexed text, so
    none should): the caller then runs the full join."""
    score = -_FTS.c.rank
    best = (
        select(_FTS.c.rowid.label("id"), score.label("score"))
        .where(matching, *_after(score, _FTS.c.rowid, after))
        .order_by(score.desc(), _FTS.c.rowid.desc())
        .limit(limit)
        .subquery("best")
    )
    query = (
        select(*SUMMARY_COLUMNS, best.c.score)
        .select_from(best.join(A, A.c.id == best.c.id).join(P, P.c.id == A.c.publisher_id))
        .order_by(best.c.score.desc(), best.c.id.desc())
    )
    rows = list(session.execute(query))
    live = [row for row in rows if row.removed_at is None]
    if len(live) < len(rows):
        return None
    return live
