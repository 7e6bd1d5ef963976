"""E-mail to claimants: the message (plain text and HTML from autoescaped Jinja2 templates)
and the SMTP transport that hands it over.

The transport tells its caller when the point of no return comes (`before_data`: just before
the message itself is sent, after the server accepted the sender and the recipient), so the
outbox can record it: a worker that dies before then has sent nothing and the e-mail is sent
again; one that dies after may have sent it, and the e-mail is never sent again (see
`app/notifications/emails.py`)."""

import logging
import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.config import Settings, SmtpUrl
from app.notifications.models import EmailKind
from app.takedowns.models import Reason
from app.web.pages import REASON_WORDS, when

_environment = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    # HTML parts are escaped; plain-text parts are text and stay as they are.
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_environment.filters["when"] = lambda text: when(datetime.fromisoformat(text))
logger = logging.getLogger("byline.notifications")

SUBJECTS = {
    # Short enough for one header line: some readers show a folded Subject with a leading space.
    EmailKind.receipt: "Removal request received: due by {due}",
    EmailKind.approved: "Your removal request was approved",
    EmailKind.rejected: "Your removal request was rejected",
    EmailKind.escalated: "Your removal request is being checked by our staff",
    EmailKind.completed: "Your removal request is completed",
    EmailKind.appeal_received: "Your appeal was received: decided by {appeal_due}",
    EmailKind.appeal_upheld: "Your appeal was decided: the rejection stands",
    EmailKind.appeal_granted: "Your appeal was granted: the content is removed",
    EmailKind.publisher_verified: "Your domain {domain} is verified",
    EmailKind.publisher_record_missing: "Your verification record for {domain} is missing",
    EmailKind.publisher_lapsed: "Your publisher key for {domain} was revoked",
}
# The receipt of a request that waits for its claimant.
CONFIRM_SUBJECT = "Confirm your removal request (due by {due})"
PUBLISHER_KINDS = {
    EmailKind.publisher_verified,
    EmailKind.publisher_record_missing,
    EmailKind.publisher_lapsed,
}


@dataclass(frozen=True)
class OutgoingEmail:
    """What the outbox holds for one e-mail: enough to render it again on every try."""

    uid: str
    kind: str
    recipient: str
    context: dict[str, Any]
    secret: str | None
    confirmation_code: str | None = None


def status_link(public_base_url: str, takedown_id: str, token: str) -> str:
    """The status page of a request, with its token (the rights holders' HTML page)."""
    return f"{public_base_url}/takedown/{quote(takedown_id, safe='')}?token={quote(token, safe='')}"


def confirmation_link(public_base_url: str, takedown_id: str, code: str) -> str:
    """The page with the one button that confirms the claimant's address. Opening it
    confirms nothing (mail scanners open links); pressing the button does."""
    return (
        f"{public_base_url}/takedown/{quote(takedown_id, safe='')}/confirm"
        f"?code={quote(code, safe='')}"
    )


def _takedown_context(email: OutgoingEmail, settings: Settings) -> dict[str, Any]:
    takedown_id = email.context["takedown_id"]
    return {
        "reason_words": REASON_WORDS[Reason(email.context["reason"])],
        "status_url": (
            status_link(settings.public_base_url, takedown_id, email.secret)
            if email.secret
            else None
        ),
        "confirm_url": (
            confirmation_link(settings.public_base_url, takedown_id, email.confirmation_code)
            if email.confirmation_code
            else None
        ),
        "removed_words": _removed_words(email.context.get("removed_articles", 0)),
        "unmatched_targets": email.context.get("unmatched_targets", []),
    }


def _day_and_time(iso: str) -> str:
    moment = datetime.fromisoformat(iso)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def _subject(kind: EmailKind, email: OutgoingEmail) -> str:
    if kind in PUBLISHER_KINDS:
        return SUBJECTS[kind].format(domain=email.context["domain"])
    template = CONFIRM_SUBJECT if email.confirmation_code else SUBJECTS[kind]
    appeal_due = email.context.get("appeal_due_at")
    return template.format(
        due=_day_and_time(email.context["due_at"]),
        appeal_due=_day_and_time(appeal_due) if appeal_due else "",
    )


def render_email(*, email: OutgoingEmail, settings: Settings, now: datetime) -> EmailMessage:
    """The message: plain text and HTML alternatives, a Message-ID made of the outbox row's
    unique id (the same on every try, so a receiving system can recognise a repeat)."""
    kind = EmailKind(email.kind)
    context = {
        **email.context,
        **({} if kind in PUBLISHER_KINDS else _takedown_context(email, settings)),
        "public_base_url": settings.public_base_url,
    }
    text = _environment.get_template(f"{kind.value}.txt").render(context)
    html = _environment.get_template(f"{kind.value}.html").render(context)
    message = EmailMessage(policy=SMTP)
    message["Subject"] = _subject(kind, email)
    message["From"] = settings.email_sender
    message["To"] = email.recipient
    message["Date"] = format_datetime(now)
    host = urlsplit(settings.public_base_url).hostname or "localhost"
    message["Message-ID"] = f"<{email.uid}@{host}>"
    # Tells mail systems not to answer it (no out-of-office replies to a robot).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def _removed_words(count: int) -> str:
    if count == 0:
        return "Nothing was left to remove."
    return f"We removed {count} article{'s' if count != 1 else ''}."


class SmtpRefused(Exception):
    """The server answered with an error before accepting the message: it was not sent.
    `permanent` for a 5xx answer (retrying cannot help)."""

    def __init__(self, code: int, stage: str) -> None:
        super().__init__(f"the SMTP server refused the {stage} with {code}")
        self.code = code
        self.permanent = 500 <= code < 600


class HandOverAborted(Exception):
    """`before_data` said no (the worker lost its lease): nothing was sent."""


class Mailer(Protocol):
    def send(
        self, message: EmailMessage, *, recipient: str, before_data: Callable[[], bool]
    ) -> None: ...


class SmtpMailer:
    """Sends through the server of BYLINE_SMTP_URL, one connection per message."""

    def __init__(
        self,
        url: SmtpUrl,
        *,
        sender: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.sender = sender
        self.timeout = timeout
        self._ssl_context = ssl_context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        # Made on first use: loading the CA certificates takes a while.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        if self.url.implicit_tls:
            return smtplib.SMTP_SSL(
                self.url.host, self.url.port, timeout=self.timeout, context=self.ssl_context
            )
        smtp = smtplib.SMTP(self.url.host, self.url.port, timeout=self.timeout)
        if self.url.starttls:
            try:
                # Required, never opportunistic: a server without STARTTLS raises here.
                smtp.starttls(context=self.ssl_context)
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(
        self, message: EmailMessage, *, recipient: str, before_data: Callable[[], bool]
    ) -> None:
        """Hand the message over; raises SmtpRefused when the server said no (to the sender,
        the recipient, DATA or the message itself),
        HandOverAborted when `before_data` said no, anything else when the connection
        failed (then the message may or may not have arrived, if it failed during DATA)."""
        _name, sender = parseaddr(self.sender)
        international = not (recipient.isascii() and sender.isascii())
        with self._connect() as smtp:
            smtp.ehlo_or_helo_if_needed()
            if self.url.username:
                smtp.login(self.url.username, self.url.password or "")
            options = ["SMTPUTF8"] if international and smtp.has_extn("smtputf8") else []
            code, _ = smtp.mail(sender, options)
            if code != 250:
                raise SmtpRefused(code, "sender")
            code, _ = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise SmtpRefused(code, "recipient")
            if not before_data():
                smtp.rset()
                raise HandOverAborted()
            payload = message.as_bytes(policy=SMTPUTF8 if options else SMTP)
            try:
                code, _ = smtp.data(payload)
            except smtplib.SMTPDataError as exc:
                # DATA itself refused: the message was never sent.
                raise SmtpRefused(exc.smtp_code, "message") from None
            # smtplib returns the answer to the message rather than raising: a 4xx or 5xx
            # here means the server did not take it.
            if code != 250:
                raise SmtpRefused(code, "message")


class FileMailer:
    """With BYLINE_SMTP_URL unset: every message is written as an .eml file under
    `directory` (made on first use) and one log line names the file, so that a local run
    can follow the whole flow, confirmation links included. Production sets SMTP."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(
        self, message: EmailMessage, *, recipient: str, before_data: Callable[[], bool]
    ) -> None:
        if not before_data():
            raise HandOverAborted()
        self.directory.mkdir(parents=True, exist_ok=True)
        written = parsedate_to_datetime(str(message["Date"])).astimezone(UTC)
        uid = str(message["Message-ID"]).strip("<>").partition("@")[0]
        path = self.directory / f"{written:%Y%m%dT%H%M%SZ}-{uid}.eml"
        partial = path.with_suffix(".eml.partial")
        international = not recipient.isascii()
        partial.write_bytes(message.as_bytes(policy=SMTPUTF8 if international else SMTP))
        os.replace(partial, path)
        # The file's name holds no address: logs never name the claimant.
        logger.info("e-mail written to %s", path)
