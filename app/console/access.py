"""Who may use the console and how its pages answer: the session cookie, the operator
dependency (no session: 303 to the sign-in page), the CSRF guard and the dependency of every
post (`PostingOperatorDep`: a bad form token is the 403 page, `FormExpired`), and the rendered
page with its form token."""

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from app.clock import request_now
from app.config import Settings
from app.console import pages, sessions
from app.console.sessions import Operator
from app.db import ReadSessionDep
from app.web.csrf import CsrfGuard

LOGIN_PATH = "/admin/login"
_COOKIE = "byline_console"
NO_STORE = {"Cache-Control": "no-store"}

# The hidden field every console form carries.
CsrfField = Annotated[str, Form(alias="csrf_token")]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def secure(request: Request) -> bool:
    return _settings(request).public_base_url.startswith("https://")


def cookie_name(request: Request) -> str:
    # `__Host-`: only this host, over https, may set it; no subdomain can plant a session.
    return f"__Host-{_COOKIE}" if secure(request) else _COOKIE


def now_of(request: Request) -> datetime:
    return request_now(request)


def guard(request: Request) -> CsrfGuard:
    return CsrfGuard.from_settings(_settings(request))


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=NO_STORE)


def signed_in(request: Request, session: Session) -> Operator | None:
    token = request.cookies.get(cookie_name(request), "")
    return sessions.find_operator(session=session, token=token, now=now_of(request))


def _operator(request: Request, session: ReadSessionDep) -> Operator:
    operator = signed_in(request, session)
    if operator is None:
        raise HTTPException(303, "Sign in first.", headers={"Location": LOGIN_PATH, **NO_STORE})
    return operator


OperatorDep = Annotated[Operator, Depends(_operator)]


class FormExpired(Exception):
    """A console post without the form token of its cookie; answered with the 403 page
    (`form_expired_page`), nothing changed."""

    def __init__(self, operator: Operator | None) -> None:
        super().__init__("the form token does not match its cookie")
        self.operator = operator


def check_form_token(request: Request, csrf_token: CsrfField = "") -> None:
    """The guard of a post made without a session (signing in)."""
    if not guard(request).accepts(request, csrf_token):
        raise FormExpired(None)


def _posting_operator(
    request: Request, operator: OperatorDep, csrf_token: CsrfField = ""
) -> Operator:
    # The session first: without one, the post is sent to the sign-in page (303), not a 403.
    if not guard(request).accepts(request, csrf_token):
        raise FormExpired(operator)
    return operator


# The signed-in operator of a console post whose form token matches its cookie.
PostingOperatorDep = Annotated[Operator, Depends(_posting_operator)]


def render(
    request: Request,
    template: str,
    operator: Operator | None,
    status: int = 200,
    **context: object,
) -> Response:
    """A console page with its form token (every page has a form: sign in, or sign out)."""
    token = guard(request).issue(request)
    return pages.page(template, {"operator": operator, **context}, form_token=token, status=status)


def forbidden(request: Request, operator: Operator | None) -> Response:
    """The answer to a post without the form token of its cookie: nothing was changed."""
    return render(request, "forbidden.html", operator, status=403)


def form_expired_page(request: Request, exc: Exception) -> Response:
    """The exception handler of `FormExpired` (installed by app/main.py)."""
    assert isinstance(exc, FormExpired)
    return forbidden(request, exc.operator)


def not_found(request: Request, operator: Operator) -> Response:
    return render(request, "not_found.html", operator, status=404)
