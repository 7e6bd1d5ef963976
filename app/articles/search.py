"""Full-text search behind one function: FTS5 on SQLite, tsvector + GIN on PostgreSQL.

User input never reaches SQL as text: it is a bound parameter, and on SQLite it is reduced to
quoted words first so that FTS5 query syntax cannot be injected."""

import re
from typing import Any

from sqlalchemy import Connection, Row, and_, column, func, literal_column, or_, table, text
from sqlmodel import Session

from app.articles.service import SUMMARY_COLUMNS, A, ArticleFilters, _filtered, _select_articles

_WORD = re.compile(r"\w+", re.UNICODE)
_FTS = table("articles_fts", column("rowid"), column("rank"))
MAX_QUERY_WORDS = 16


def fts5_query(q: str) -> str | None:
    """`hostile "query" OR x*` -> `"hostile" "query" "OR" "x"`: every word literal, all required."""
    words = _WORD.findall(q)[:MAX_QUERY_WORDS]
    return " ".join(f'"{word}"' for word in words) or None


def search_articles(
    *,
    session: Session | Connection,
    q: str,
    filters: ArticleFilters,
    after: tuple[float, int] | None,
    limit: int,
) -> list[tuple[Row[Any], float]]:
    """Articles matching `q`, best first (ties newest id first), keyset-paged on (score, id)."""
    bind = session.get_bind() if isinstance(session, Session) else session
    if bind.dialect.name == "postgresql":
        query_ts = func.websearch_to_tsquery("english", q)
        vector: Any = literal_column("articles.search_vector")
        score: Any = func.ts_rank_cd(vector, query_ts)
        query = _select_articles(*SUMMARY_COLUMNS, score.label("score")).where(
            vector.op("@@")(query_ts)
        )
    else:
        match = fts5_query(q)
        if match is None:
            return []
        score = -_FTS.c.rank
        query = (
            _select_articles(*SUMMARY_COLUMNS, score.label("score"))
            .join(_FTS, _FTS.c.rowid == A.c.id)
            .where(text("articles_fts MATCH :match").bindparams(match=match))
        )
    query = _filtered(query, filters)
    if after is not None:
        after_score, after_id = after
        query = query.where(or_(score < after_score, and_(score == after_score, A.c.id < after_id)))
    rows = session.execute(query.order_by(score.desc(), A.c.id.desc()).limit(limit)).all()
    return [(row, float(row.score)) for row in rows]
