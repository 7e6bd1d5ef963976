"""Conditional GET: whether a request's If-None-Match names an answer's ETag (answer 304)."""

from starlette.requests import Request
from starlette.types import Scope


def if_none_match(scope: Scope) -> str | None:
    """The first If-None-Match header, as `request.headers.get` gives it, read from the
    scope: Starlette's Headers answers a missing header (nearly every read) by raising and
    catching a KeyError."""
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return value.decode("latin-1")
    return None


def names_etag(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match value names `etag` (or `*`)."""
    if not if_none_match:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def not_modified(request: Request, etag: str) -> bool:
    """Whether the request's If-None-Match names `etag` (or `*`): answer 304."""
    return names_etag(if_none_match(request.scope), etag)
