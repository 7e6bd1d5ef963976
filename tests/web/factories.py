"""Plain functions for the page tests: a valid form, its CSRF token, the confirmation page's
button, and a tiny HTML reader."""

import re
from html.parser import HTMLParser
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

CLAIMANT_EMAIL = "legal@reuters.com"


def form_fields(**overrides: str) -> dict[str, str]:
    """What a rights holder types into the form for a valid request (targets empty)."""
    fields = {
        "name": "Priya Claimant",
        "email": CLAIMANT_EMAIL,
        "organization": "Reuters",
        "role": "owner",
        "reason": "copyright",
        "targets": "",
        "explanation": "Our licence with the aggregator ended on 1 March.",
        "good_faith": "yes",
        "accurate": "yes",
        "signature": "P. Claimant",
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not None}


def csrf_token(client: TestClient, path: str = "/takedown") -> str:
    """Open a page with a form (which sets the CSRF cookie) and read its token."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', response.text)
    assert match, "the page has no CSRF token"
    return match.group(1)


def post_form(client: TestClient, **fields: str) -> Response:
    """Open the form and send it, as a browser without JavaScript does."""
    token = csrf_token(client)
    return client.post("/takedown", data={"csrf_token": token, **form_fields(**fields)})


def takedown_id_of(html: str) -> str:
    """The request number on a receipt or status page."""
    match = re.search(r"<dt>Request number</dt><dd><code>([0-9a-f-]{36})</code>", html)
    assert match, "the page shows no request number"
    return match.group(1)


def confirm_path(takedown_id: str, code: str) -> str:
    """The path of the e-mailed confirmation link."""
    return f"/takedown/{takedown_id}/confirm?code={code}"


def press_confirm(client: TestClient, takedown_id: str, code: str) -> Response:
    """Open the e-mailed link and press its one button, as a browser without JavaScript
    does; the answer to the button's post (a 303 back to the page), not followed."""
    token = csrf_token(client, confirm_path(takedown_id, code))
    return client.post(
        f"/takedown/{takedown_id}/confirm",
        data={"csrf_token": token, "code": code},
        follow_redirects=False,
    )


def status_path(html: str) -> str:
    """The status link on a receipt page, without our origin."""
    match = re.search(r'class="status-link" href="https://news\.example(/takedown/[^"]+)"', html)
    assert match, "the receipt shows no status link"
    return match.group(1).replace("&amp;", "&")


class Elements(HTMLParser):
    """Every start tag's attributes, and the text inside elements with an id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._open: list[tuple[str, str | None]] = []
        self.text_by_id: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if tag not in {"input", "br", "meta", "link"}:
            self._open.append((tag, attributes.get("id")))
            if attributes.get("id"):
                self.text_by_id[attributes["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if (
            self._open
            and self._open[-1][0] == "textarea"
            and not self.text_by_id.get(self._open[-1][1] or "")
        ):
            data = data.removeprefix("\n")  # as browsers read a text area
        for _, element_id in self._open:
            if element_id:
                self.text_by_id[element_id] += data

    def by_id(self, element_id: str) -> dict[str, str]:
        found = [attrs for _, attrs in self.tags if attrs.get("id") == element_id]
        assert len(found) == 1, f"expected one element with id {element_id!r}, found {len(found)}"
        return found[0]

    def all(self, tag: str) -> list[dict[str, Any]]:
        return [attrs for name, attrs in self.tags if name == tag]
