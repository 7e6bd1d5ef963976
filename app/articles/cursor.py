"""Opaque keyset cursors. A checksum makes any tampered cursor a 400, never a 500."""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.errors import ProblemError

# Not a secret: the checksum guards integrity (a mangled cursor is refused), not access.
_KEY = b"byline-cursor-v1"
_DIGEST_SIZE = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class BadCursor(ProblemError):
    def __init__(self) -> None:
        super().__init__(
            400,
            "bad-cursor",
            "The cursor is not one this API issued; start again without it.",
            errors=None,
        )


@dataclass(frozen=True)
class Position:
    """Where a page ended: the sort key of its last row (`rank` only for searches)."""

    published_at: datetime
    article_id: int
    rank: float | None = None


def _checksum(payload: bytes) -> bytes:
    return hmac.new(_KEY, payload, hashlib.blake2b).digest()[:_DIGEST_SIZE]


def encode_cursor(position: Position) -> str:
    micros = (position.published_at - _EPOCH) // _MICROSECOND
    rank = "" if position.rank is None else repr(position.rank)
    payload = f"{micros}:{position.article_id}:{rank}".encode()
    return base64.urlsafe_b64encode(payload + _checksum(payload)).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise BadCursor() from None
    payload, checksum = raw[:-_DIGEST_SIZE], raw[-_DIGEST_SIZE:]
    if len(raw) <= _DIGEST_SIZE or not hmac.compare_digest(checksum, _checksum(payload)):
        raise BadCursor()
    try:
        micros, article_id, rank = payload.decode().split(":")
        return Position(
            published_at=_EPOCH + int(micros) * _MICROSECOND,
            article_id=int(article_id),
            rank=float(rank) if rank else None,
        )
    except (ValueError, OverflowError, OSError):
        raise BadCursor() from None
