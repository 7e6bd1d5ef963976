"""How the console's pages are rendered: its own templates on the rights holders' security
headers and stylesheet (plus console.css), the countdown to each request's deadline, and the
words for proof levels, views and rejection templates."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.console.service import REJECTION_TEMPLATES
from app.takedowns.policy import Proof
from app.takedowns.service import QueueView
from app.web import pages as rights_holder_pages
from app.web.csrf import FormToken

_HERE = Path(__file__).parent
STYLESHEET = (_HERE.parent / "web" / "static" / "console.css").read_bytes()
STYLESHEET_URL = f"/static/console.css?v={hashlib.sha256(STYLESHEET).hexdigest()[:12]}"

VIEW_WORDS = {
    QueueView.open: "Open",
    QueueView.awaiting_confirmation: "Awaiting confirmation",
    QueueView.review_window: "In review window",
    QueueView.escalated: "Escalated",
    QueueView.queued: "Queued",
    QueueView.appealed: "Appealed",
    QueueView.overdue: "Overdue",
    QueueView.completed: "Completed",
    QueueView.rejected: "Rejected",
}
PROOF_WORDS = {
    Proof.legacy: "Filed before e-mail confirmation existed",
    Proof.unconfirmed: "Unconfirmed: the claimant has not confirmed the e-mail address",
    Proof.mailbox: "Confirmed mailbox",
    Proof.publisher: "DNS-verified publisher (publisher key)",
}
# Colour thresholds of the countdown (classes in console.css).
SOON = timedelta(hours=6)
VERY_SOON = timedelta(hours=1)


@dataclass(frozen=True)
class Countdown:
    """Time left to a deadline, in words, and its urgency class."""

    words: str
    css_class: str


def _hours_minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    # Appeals are due in days: "6 d 23 h" reads better than "167 h".
    if hours >= 48:
        return f"{hours // 24} d {hours % 24} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def countdown(due_at: datetime, now: datetime) -> Countdown:
    """`5 h 12 min left` / `overdue by 20 min`: later than 6 h, within 6 h, within 1 h,
    overdue."""
    left = due_at - now
    if left < timedelta(0):
        return Countdown(f"overdue by {_hours_minutes(-left)}", "due-overdue")
    urgency = "due-later" if left > SOON else "due-soon" if left > VERY_SOON else "due-urgent"
    return Countdown(f"{_hours_minutes(left)} left", urgency)


_environment = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["when"] = rights_holder_pages.when
_environment.filters["iso"] = rights_holder_pages.iso
_environment.globals.update(
    stylesheets=[rights_holder_pages.STYLESHEET_URL, STYLESHEET_URL],
    status_words=rights_holder_pages.STATUS_WORDS,
    reason_words=rights_holder_pages.REASON_WORDS,
    target_words=rights_holder_pages.TARGET_WORDS,
    view_words=VIEW_WORDS,
    proof_words=PROOF_WORDS,
    rejection_templates=REJECTION_TEMPLATES,
)


def page(
    template: str,
    context: dict[str, Any],
    *,
    form_token: FormToken,
    status: int = 200,
) -> HTMLResponse:
    """A console page: the rights holders' security headers (no-store, CSP), and the CSRF
    cookie when it is new. Every console page has a form (sign in, or sign out)."""
    html = _environment.get_template(template).render(csrf_token=form_token.value, **context)
    response = HTMLResponse(html, status_code=status, headers=rights_holder_pages.PAGE_HEADERS)
    form_token.set_cookie(response)
    return response
