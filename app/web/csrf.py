"""CSRF protection for the rights holders' form posts: a double-submit cookie, signed when
BYLINE_CSRF_SECRET is set.

A page with a form sets a random nonce in an HttpOnly cookie and puts HMAC(secret, nonce) in
a hidden field; a post is accepted only when the field is the HMAC of the cookie it came with.
Another site can make a browser post to us, but can neither read our cookie nor our page, so
it cannot produce the matching field.

Nothing is kept on the server, so any number of API processes accept each other's tokens, as
long as they share the secret. That is why there is no random per-process default: a token
issued by one worker would be refused by the next. Without a configured secret the HMAC key
is empty and the scheme is the plain double-submit cookie, which still stops cross-site posts;
the secret adds that someone able to plant a cookie for our host (a sibling subdomain, a
network attacker on plain http) still cannot forge the field. On https the cookie is also
`__Host-` prefixed, which already refuses cookies planted by other subdomains.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from fastapi import Request, Response

from app.config import Settings

FIELD = "csrf_token"
_COOKIE = "byline_csrf"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
# Browsers say where a request came from; a post from any other site is refused outright.
_FOREIGN_SITES = {"cross-site", "same-site"}


@dataclass(frozen=True)
class CsrfGuard:
    """Issues and checks the form tokens of one app."""

    key: bytes
    secure: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> "CsrfGuard":
        secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else ""
        return cls(key=secret.encode(), secure=settings.public_base_url.startswith("https://"))

    @property
    def cookie_name(self) -> str:
        # `__Host-` cookies must be Secure with Path=/ and no Domain: no subdomain can set one.
        return f"__Host-{_COOKIE}" if self.secure else _COOKIE

    def token_for(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()

    def _nonce(self, request: Request) -> str | None:
        nonce = request.cookies.get(self.cookie_name, "")
        return nonce if _NONCE.match(nonce) else None

    def issue(self, request: Request) -> "FormToken":
        """The token for the forms of a page; a new cookie only when the browser has none, so
        that several open tabs keep working."""
        nonce = self._nonce(request)
        if nonce is not None:
            return FormToken(self.token_for(nonce), None, self)
        nonce = secrets.token_urlsafe(32)
        return FormToken(self.token_for(nonce), nonce, self)

    def accepts(self, request: Request, token: object) -> bool:
        """Whether a form post carries the token of the cookie it came with, from our site."""
        if request.headers.get("sec-fetch-site", "") in _FOREIGN_SITES:
            return False
        nonce = self._nonce(request)
        if nonce is None or not isinstance(token, str):
            return False
        return hmac.compare_digest(token.encode(), self.token_for(nonce).encode())


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
