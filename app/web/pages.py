"""How the rights holders' pages are rendered and protected: one Jinja2 environment with
autoescaping, the words for states and reasons, and the security headers every page sends."""

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from app.db import new_session
from app.takedowns.models import Reason, TakedownStatus, TargetState
from app.web.csrf import FormToken

_HERE = Path(__file__).parent
STYLESHEET = (_HERE / "static" / "takedown.css").read_bytes()
# The version in the URL lets browsers cache the stylesheet until it changes.
STYLESHEET_URL = f"/static/takedown.css?v={hashlib.sha256(STYLESHEET).hexdigest()[:12]}"

# Nothing but our own stylesheet loads; forms post only to us; no one frames the pages.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Status links carry their token in the query: never send it on in a Referer.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Pages hold form tokens and status tokens: never cached, by anyone.
    "Cache-Control": "no-store",
}

REASONS = {
    Reason.copyright: "Copyright: I own the rights to this content",
    Reason.owner_request: "I own this content and do not want it republished here",
    Reason.privacy: "Privacy: it contains personal information about me or my client",
    Reason.defamation: "Defamation: it makes false statements that harm me or my client",
    Reason.other: "Another reason (explain below)",
}
REASON_WORDS = {
    Reason.copyright: "Copyright",
    Reason.owner_request: "The owner does not want it republished",
    Reason.privacy: "Privacy",
    Reason.defamation: "Defamation",
    Reason.other: "Other",
}
STATEMENTS = [
    (
        "good_faith",
        "I believe in good faith that the use of this content here is not authorised by the "
        "rights holder, their agent or the law.",
        "This means you honestly believe we have no permission to republish it. You do not "
        "need to be sure of the law, but you must not send a request you know to be unfounded.",
    ),
    (
        "accurate",
        "The information in this request is accurate.",
        "This means that what you wrote above is true to the best of your knowledge. False "
        "statements in a removal request can make you liable for the harm they cause.",
    ),
]
STATUS_WORDS = {
    TakedownStatus.received: "Waiting for you to confirm your e-mail address",
    TakedownStatus.queued: "Accepted, removal scheduled",
    TakedownStatus.escalated: "Being checked by our staff",
    TakedownStatus.executing: "Being removed",
    TakedownStatus.completed: "Completed",
    TakedownStatus.rejected: "Rejected",
    TakedownStatus.withdrawn: "Withdrawn",
}
STATUS_MEANING = {
    TakedownStatus.received: "Nothing is removed or blocked until you confirm your e-mail "
    "address: open the link we e-mailed you and press the button on the page.",
    TakedownStatus.queued: "The content will be removed before the deadline. You need to do "
    "nothing more.",
    TakedownStatus.escalated: "A person on our staff checks this request before anything is "
    "removed. You will see the decision and our reasons here.",
    TakedownStatus.executing: "We are removing the content now.",
    TakedownStatus.completed: "Everything this request names has been removed, and we will not "
    "republish it. Addresses we had not published are blocked, so we never will.",
    TakedownStatus.rejected: "We did not remove the content. Our reasons are below.",
    TakedownStatus.withdrawn: "You withdrew this request; nothing was removed because of it.",
}
TARGET_WORDS = {
    TargetState.pending: "Waiting for removal",
    TargetState.removed: "Removed",
    TargetState.blocked: "Blocked",
    TargetState.cancelled: "Cancelled",
}


def when(moment: datetime) -> str:
    """`Tuesday 6 January 2026, 09:00 UTC`: unambiguous in every country."""
    moment = moment.astimezone(UTC)
    return f"{moment:%A} {moment.day} {moment:%B %Y, %H:%M} UTC"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration_words(delta: timedelta) -> str:
    """`7 days`, `4 hours`, `90 minutes`: a period as the policy text says it."""
    minutes = int(delta.total_seconds() // 60)
    if minutes % (24 * 60) == 0 and minutes:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0 and minutes:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


_environment = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["when"] = when
_environment.filters["iso"] = iso
_environment.globals.update(
    stylesheet=STYLESHEET_URL,
    status_words=STATUS_WORDS,
    status_meaning=STATUS_MEANING,
    target_words=TARGET_WORDS,
    reason_words=REASON_WORDS,
)


def page(
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    form_token: FormToken | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A rendered page with the security headers, setting the CSRF cookie if it is new."""
    html = _environment.get_template(template).render(**context)
    response = HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
    if form_token is not None:
        form_token.set_cookie(response)
    return response


class PageInstead(Exception):
    """Raised by a page route whose action was refused: the request's session rolls back as
    for any error (nothing of the refused action is kept), then `render` draws the page that
    answers it on a session of its own."""

    def __init__(self, render: Callable[[Session], Response]) -> None:
        super().__init__("page instead")
        self.render = render


def page_instead(request: Request, exc: Exception) -> Response:
    """The exception handler of PageInstead (sync: Starlette runs it in the threadpool)."""
    assert isinstance(exc, PageInstead)
    with new_session(request.app.state.engine) as session:
        return exc.render(session)
