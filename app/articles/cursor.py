"""Cursors of the article lists: (published_at, id), plus the score for searches, and for a
search ranked window by window (PostgreSQL, search.py) the window the page ended in."""

from dataclasses import dataclass
from datetime import datetime

from app.cursor import BadCursor, moment_part, parse_int, parse_moment, seal, unseal

_KEY = b"byline-articles-cursor-v2"

__all__ = ["BadCursor", "Position", "decode_cursor", "encode_cursor"]


@dataclass(frozen=True)
class Position:
    """Where a page ended: the sort key of its last row (`rank` only for searches), and the
    bounds of the search window it lies in (`window_start` inclusive, `window_end` exclusive;
    None: unbounded)."""

    published_at: datetime
    article_id: int
    rank: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


def _optional_moment(moment: datetime | None) -> str:
    return "" if moment is None else moment_part(moment)


def encode_cursor(position: Position) -> str:
    rank = "" if position.rank is None else repr(position.rank)
    return seal(
        _KEY,
        moment_part(position.published_at),
        str(position.article_id),
        rank,
        _optional_moment(position.window_start),
        _optional_moment(position.window_end),
    )


def decode_cursor(cursor: str) -> Position:
    published_at, article_id, rank, start, end = unseal(_KEY, cursor, 5)
    try:
        score = float(rank) if rank else None
    except ValueError:
        raise BadCursor() from None
    return Position(
        parse_moment(published_at),
        parse_int(article_id),
        score,
        parse_moment(start) if start else None,
        parse_moment(end) if end else None,
    )
