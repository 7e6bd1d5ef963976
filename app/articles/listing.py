"""One page of the article listing or of a search, from where the cursor left off: the
position a cursor carries becomes the query's keyset (and a search's window), and the page's
last row the position of the next cursor."""

from typing import Any

from sqlalchemy import Connection, Row

from app.articles.cursor import Position
from app.articles.search import SearchWindow, search_articles
from app.articles.service import ArticleFilters, list_articles


def page_rows(
    connection: Connection,
    *,
    q: str | None,
    filters: ArticleFilters,
    position: Position | None,
    limit: int,
) -> tuple[list[Row[Any]], Position | None]:
    """The summary rows of one page of the listing or of a search, and where it ended."""
    if q is None:
        after = (position.published_at, position.article_id) if position else None
        rows = list_articles(session=connection, filters=filters, after=after, limit=limit)
        return rows, (Position(rows[-1].published_at, rows[-1].id) if rows else None)
    after_score, window = None, None
    if position is not None and position.rank is not None:
        after_score = (position.rank, position.article_id)
        if position.window_start is not None:
            window = SearchWindow(position.window_start, position.window_end)
    matches = search_articles(
        session=connection, q=q, filters=filters, after=after_score, window=window, limit=limit
    )
    if not matches:
        return [], None
    end = matches[-1]
    last = Position(
        end.row.published_at,
        end.row.id,
        end.score,
        end.window.start if end.window else None,
        end.window.end if end.window else None,
    )
    return [match.row for match in matches], last
