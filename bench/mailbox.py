"""The claimants' inbox in a benchmark: the .eml files byline's FileMailer writes under
BYLINE_MAIL_DIR when BYLINE_SMTP_URL is unset, read as a claimant reads them. The code is
taken from the confirmation link in the e-mail's text, not from the database.

The notification runner writes a receipt on its tick, so an e-mail appears up to one
scheduler interval after the filing; callers poll `wait_for`."""

import re
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import cast
from urllib.parse import unquote

CONFIRM_LINK = re.compile(r"/takedown/(?P<id>[^/\s?]+)/confirm\?code=(?P<code>[^\s\"'<>&]+)")


@dataclass(frozen=True)
class ConfirmationEmail:
    """A receipt with its confirmation link, and when the inbox first read it."""

    takedown_id: str
    code: str
    recipient: str
    seen_at: float  # time.perf_counter()


class Inbox:
    """The .eml files of one mail directory; safe to read from several threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._read: set[str] = set()
        self._found: dict[str, ConfirmationEmail] = {}
        self._lock = threading.Lock()

    def read_new(self) -> list[ConfirmationEmail]:
        """The confirmation e-mails written since the last call (other e-mails are skipped)."""
        with self._lock:
            new = []
            # FileMailer writes `*.eml.partial` and renames it: a `*.eml` is complete.
            for path in sorted(self.directory.glob("*.eml")):
                if path.name in self._read:
                    continue
                self._read.add(path.name)
                found = parse_confirmation(path.read_bytes())
                if found is not None:
                    self._found[found.takedown_id] = found
                    new.append(found)
            return new

    def wait_for(
        self, takedown_id: str, *, timeout: float, poll: float = 0.02
    ) -> ConfirmationEmail:
        """The confirmation e-mail of one request, once it has been written."""
        deadline = time.perf_counter() + timeout
        while True:
            self.read_new()
            with self._lock:
                found = self._found.get(takedown_id)
            if found is not None:
                return found
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no confirmation e-mail for {takedown_id} in {timeout:.0f} s")
            time.sleep(poll)


def parse_confirmation(raw: bytes) -> ConfirmationEmail | None:
    """The request id and code of the confirmation link in an e-mail's plain text; None for
    an e-mail without one (a completion, an escalation)."""
    message = cast(EmailMessage, message_from_bytes(raw, policy=policy.default))
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        return None
    match = CONFIRM_LINK.search(cast(EmailMessage, body).get_content())
    if match is None:
        return None
    return ConfirmationEmail(
        takedown_id=unquote(match["id"]),
        code=unquote(match["code"]),
        recipient=str(message["To"]),
        seen_at=time.perf_counter(),
    )
