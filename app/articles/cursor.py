"""Cursors of the article lists: (published_at, id), plus the score for searches."""

from dataclasses import dataclass
from datetime import datetime

from app.cursor import BadCursor, moment_part, parse_int, parse_moment, seal, unseal

_KEY = b"byline-articles-cursor-v1"

__all__ = ["BadCursor", "Position", "decode_cursor", "encode_cursor"]


@dataclass(frozen=True)
class Position:
    """Where a page ended: the sort key of its last row (`rank` only for searches)."""

    published_at: datetime
    article_id: int
    rank: float | None = None


def encode_cursor(position: Position) -> str:
    rank = "" if position.rank is None else repr(position.rank)
    return seal(_KEY, moment_part(position.published_at), str(position.article_id), rank)


def decode_cursor(cursor: str) -> Position:
    published_at, article_id, rank = unseal(_KEY, cursor, 3)
    try:
        score = float(rank) if rank else None
    except ValueError:
        raise BadCursor() from None
    return Position(parse_moment(published_at), parse_int(article_id), score)
