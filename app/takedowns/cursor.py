"""Opaque keyset cursors for the operators' lists (requests, audit rows, blocks).

Same contract as the articles' cursors: a checksum turns a tampered cursor into a 400."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from app.articles.cursor import BadCursor

# Not a secret: the checksum guards integrity (a mangled cursor is refused), not access.
_KEY = b"byline-takedowns-cursor-v1"
_DIGEST_SIZE = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _checksum(payload: bytes) -> bytes:
    return hmac.new(_KEY, payload, hashlib.blake2b).digest()[:_DIGEST_SIZE]


def _encode(*parts: str) -> str:
    payload = "|".join(parts).encode()
    return base64.urlsafe_b64encode(payload + _checksum(payload)).decode().rstrip("=")


def _decode(cursor: str, count: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise BadCursor() from None
    payload, checksum = raw[:-_DIGEST_SIZE], raw[-_DIGEST_SIZE:]
    if len(raw) <= _DIGEST_SIZE or not hmac.compare_digest(checksum, _checksum(payload)):
        raise BadCursor()
    try:
        parts = payload.decode().split("|")
    except UnicodeDecodeError:
        raise BadCursor() from None
    if len(parts) != count:
        raise BadCursor()
    return parts


def encode_received(received_at: datetime, takedown_id: str) -> str:
    """A cursor after the request (received_at, id)."""
    return _encode(str((received_at - _EPOCH) // _MICROSECOND), takedown_id)


def decode_received(cursor: str) -> tuple[datetime, str]:
    micros, takedown_id = _decode(cursor, 2)
    try:
        return _EPOCH + int(micros) * _MICROSECOND, takedown_id
    except (ValueError, OverflowError):
        raise BadCursor() from None


def encode_id(row_id: int) -> str:
    """A cursor after the row with this id."""
    return _encode(str(row_id))


def decode_id(cursor: str) -> int:
    (row_id,) = _decode(cursor, 1)
    try:
        return int(row_id)
    except ValueError:
        raise BadCursor() from None
