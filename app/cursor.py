"""Opaque keyset cursors shared by every paged list: a few text parts, sealed with a
checksum so that any tampered cursor is a 400, never a 500 or a silently wrong page."""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from app.errors import ProblemError

_DIGEST_SIZE = 8
_SEPARATOR = "|"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class BadCursor(ProblemError):
    def __init__(self) -> None:
        super().__init__(
            400, "bad-cursor", "The cursor is not one this API issued; start again without it."
        )


def _checksum(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.blake2b).digest()[:_DIGEST_SIZE]


def seal(key: bytes, *parts: str) -> str:
    """A cursor carrying `parts`. The key is not a secret: it guards integrity, not access,
    and a list's own key keeps one list's cursors from being replayed on another."""
    payload = _SEPARATOR.join(parts).encode()
    return base64.urlsafe_b64encode(payload + _checksum(key, payload)).decode().rstrip("=")


def unseal(key: bytes, cursor: str, count: int) -> list[str]:
    """The `count` parts of a cursor sealed with `key`; BadCursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise BadCursor() from None
    payload, checksum = raw[:-_DIGEST_SIZE], raw[-_DIGEST_SIZE:]
    if len(raw) <= _DIGEST_SIZE or not hmac.compare_digest(checksum, _checksum(key, payload)):
        raise BadCursor()
    try:
        parts = payload.decode().split(_SEPARATOR)
    except UnicodeDecodeError:
        raise BadCursor() from None
    if len(parts) != count:
        raise BadCursor()
    return parts


def moment_part(moment: datetime) -> str:
    """A datetime as exact integer microseconds (no float rounding)."""
    return str((moment - _EPOCH) // _MICROSECOND)


def parse_moment(part: str) -> datetime:
    try:
        return _EPOCH + int(part) * _MICROSECOND
    except (ValueError, OverflowError):
        raise BadCursor() from None


def parse_int(part: str) -> int:
    try:
        return int(part)
    except ValueError:
        raise BadCursor() from None


def page_url(request: Request, cursor: str | None, *, path: str | None = None) -> str:
    """This request's list at `cursor` (None: its first page), every other parameter kept;
    at `path` when given (the same list in another form), else at this request's path."""
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    if cursor is not None:
        params["cursor"] = cursor
    query = urlencode(params)
    return f"{request.app.state.settings.public_base_url}{path or request.url.path}" + (
        f"?{query}" if query else ""
    )


@dataclass(frozen=True)
class NextPage:
    """The page after this one: its cursor, and this request with that cursor."""

    cursor: str
    url: str

    @property
    def link(self) -> str:
        """The Link header to it."""
        return f'<{self.url}>; rel="next"'


def link_next_page(request: Request, response: Response, cursor: str | None) -> None:
    """The Link header to the page at `cursor` (this request's list), when there is one."""
    if cursor is not None:
        response.headers["Link"] = NextPage(cursor, page_url(request, cursor)).link
