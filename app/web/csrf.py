"""CSRF protection for every form post (the rights holders' pages and the operators'
console): a double-submit cookie, signed with a secret.

A page with a form sets a random nonce in an HttpOnly cookie and puts HMAC(secret, nonce) in
a hidden field; a post is accepted only when the field is the HMAC of the cookie it came with.
Another site can make a browser post to us, but can neither read our cookie nor our page, so
it cannot produce the matching field; and someone able to plant a cookie for our host (a
sibling subdomain, a network attacker on plain http) cannot produce it without the secret.

Nothing per form is kept on the server, so any number of API processes accept each other's
tokens, as long as they share the secret: BYLINE_CSRF_SECRET, or when that is unset a random
secret generated once and kept in the database (`csrf_secrets`), which every process reads.
There is never an empty or guessable key: under one, a planted cookie and its HMAC, computed
by anyone, were accepted. On https the cookie is also `__Host-` prefixed, which refuses
cookies planted by other subdomains.
"""

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request, Response
from sqlalchemy import Engine, String, select
from sqlmodel import Field, Session, SQLModel, col

from app.config import Settings
from app.db import UTCDateTime, new_session, writer
from app.dialects import dialect_of

FIELD = "csrf_token"
_COOKIE = "byline_csrf"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
# Browsers say where a request came from; a post from any other site is refused outright.
_FOREIGN_SITES = {"cross-site", "same-site"}
# The one row of `csrf_secrets`.
_SECRET_ID = 1


class CsrfSecret(SQLModel, table=True):
    """The form tokens' key when BYLINE_CSRF_SECRET is unset: generated once, shared by every
    process through the database."""

    __tablename__ = "csrf_secrets"

    id: int = Field(primary_key=True)
    secret: str = Field(sa_type=String(64))
    created_at: datetime = Field(sa_type=UTCDateTime)


def _read_secret(session: Session) -> str | None:
    return session.scalar(select(col(CsrfSecret.secret)).where(col(CsrfSecret.id) == _SECRET_ID))


def stored_secret(engine: Engine, now: datetime) -> bytes:
    """The database's secret, created on first use; of two processes creating it at once,
    the first insert wins and both read it."""
    with new_session(engine) as session:
        secret = _read_secret(session)
    if secret is None:
        with new_session(writer(engine)) as session, session.begin():
            insert = dialect_of(session).insert(CsrfSecret.__table__)  # type: ignore[attr-defined]
            session.execute(
                insert.values(
                    id=_SECRET_ID, secret=secrets.token_hex(32), created_at=now
                ).on_conflict_do_nothing()
            )
            secret = _read_secret(session)
    assert secret is not None
    return secret.encode()


_loading = threading.Lock()


def _key_of_app(request: Request) -> bytes:
    """The app's key: the setting, else the database's secret, read once per app."""
    state = request.app.state
    key: bytes | None = getattr(state, "csrf_key", None)
    if key is None:
        with _loading:
            key = getattr(state, "csrf_key", None)
            if key is None:
                settings: Settings = state.settings
                configured = settings.csrf_secret
                key = (
                    configured.get_secret_value().encode()
                    if configured is not None
                    else stored_secret(state.engine, state.clock.now())
                )
                state.csrf_key = key
    return key


@dataclass(frozen=True)
class CsrfGuard:
    """Issues and checks the form tokens of one app."""

    secure: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> "CsrfGuard":
        return cls(secure=settings.public_base_url.startswith("https://"))

    @property
    def cookie_name(self) -> str:
        # `__Host-` cookies must be Secure with Path=/ and no Domain: no subdomain can set one.
        return f"__Host-{_COOKIE}" if self.secure else _COOKIE

    @staticmethod
    def token_for(request: Request, nonce: str) -> str:
        return hmac.new(_key_of_app(request), nonce.encode(), hashlib.sha256).hexdigest()

    def _nonce(self, request: Request) -> str | None:
        nonce = request.cookies.get(self.cookie_name, "")
        return nonce if _NONCE.match(nonce) else None

    def issue(self, request: Request) -> "FormToken":
        """The token for the forms of a page; a new cookie only when the browser has none, so
        that several open tabs keep working."""
        nonce = self._nonce(request)
        if nonce is not None:
            return FormToken(self.token_for(request, nonce), None, self)
        nonce = secrets.token_urlsafe(32)
        return FormToken(self.token_for(request, nonce), nonce, self)

    def accepts(self, request: Request, token: object) -> bool:
        """Whether a form post carries the token of the cookie it came with, from our site."""
        if request.headers.get("sec-fetch-site", "") in _FOREIGN_SITES:
            return False
        nonce = self._nonce(request)
        if nonce is None or not isinstance(token, str):
            return False
        return hmac.compare_digest(token.encode(), self.token_for(request, nonce).encode())


@dataclass(frozen=True)
class FormToken:
    """A page's form token, and the cookie the page's response must set (if any)."""

    value: str
    new_nonce: str | None
    guard: CsrfGuard

    def set_cookie(self, response: Response) -> None:
        if self.new_nonce is None:
            return
        response.set_cookie(
            self.guard.cookie_name,
            self.new_nonce,
            path="/",
            secure=self.guard.secure,
            httponly=True,
            samesite="lax",
        )
