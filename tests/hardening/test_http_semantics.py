"""HTTP as clients expect it (issue 21): HEAD answers like GET without a body, a 405 lists every
method of its path, a JSON body sent as something else is a 415, what uvicorn would answer by
itself (an unparsable request, a target or head over the limit) is problem+json however the
head arrives, and /docs loads nothing from another origin, under a strict CSP.

The first tests use the app in process; those about request heads and bodies on the wire use a
real `byline serve` (tests/hardening/servers.py), on the test database of either engine."""

import re
import socket
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.timeouts import MAX_HEAD_BYTES
from tests.articles.factories import article_payload, ingest
from tests.hardening.servers import Server
from tests.web.factories import post_form

PROBLEM = "application/problem+json"
# Headers that differ between two answers to the same request by nature (a page's form sets a
# fresh CSRF cookie each time).
PER_ANSWER_HEADERS = {"date", "set-cookie"}


def _same_answer_heads(head: httpx.Response, get: httpx.Response) -> None:
    assert head.status_code == get.status_code
    assert {k: v for k, v in head.headers.items() if k not in PER_ANSWER_HEADERS} == {
        k: v for k, v in get.headers.items() if k not in PER_ANSWER_HEADERS
    }
    assert head.content == b""


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `byline serve` for this module's tests on the wire (each test's keys and rows are
    its own: the server reads them from the database)."""
    server = Server(database_url, tmp_path_factory.mktemp("serve") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


# --- HEAD -------------------------------------------------------------------------------


@pytest.fixture
def article(client: TestClient, ingest_headers: dict[str, str]) -> dict[str, Any]:
    return ingest(client, ingest_headers)


def test_head_answers_every_kind_of_get_route_like_get_without_a_body(
    client: TestClient,
    article: dict[str, Any],
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    reads = [
        (f"/v1/articles/{article['id']}", {}),  # the reads by key, ahead of the router
        (f"/v1/articles/by-slug/{article['slug']}", {}),
        ("/v1/articles/999999", {}),  # a 404 problem, by key
        ("/v1/articles/not-an-id", {}),  # a 422 problem, by key
        ("/v1/articles?limit=1", {}),
        ("/v1/articles.atom", {}),
        ("/v1/publishers", {}),
        ("/v1/feeds", ingest_headers),
        ("/v1/admin/keys", admin_headers),
        ("/v1/admin/keys", {}),  # 401
        ("/healthz", {}),
        ("/openapi.json", {}),
        ("/docs", {}),
        ("/takedown", {}),  # a rights holder's page
    ]
    for path, headers in reads:
        get = client.get(path, headers=headers)
        head = client.head(path, headers=headers)
        _same_answer_heads(head, get)
    etag = client.get(f"/v1/articles/{article['id']}").headers["etag"]
    not_modified = client.head(f"/v1/articles/{article['id']}", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag


def test_head_on_a_path_without_get_is_a_405_that_lists_its_methods(client: TestClient) -> None:
    response = client.head("/v1/admin/keys/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE"


def _read_head(sock: socket.socket, buffer: bytearray) -> tuple[str, dict[str, str]]:
    """One answer's status line and headers, from `buffer` and then the socket."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed mid-head: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {name.lower(): value for name, value in (li.split(": ", 1) for li in lines)}


def test_head_through_the_server_sends_the_get_headers_and_not_one_byte_of_body(
    server: Server, ingest_headers: dict[str, str]
) -> None:
    created = httpx.post(
        f"{server.url}/v1/articles", json=article_payload(3), headers=ingest_headers
    )
    path = f"/v1/articles/{created.json()['article']['id']}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # HEAD, then GET on the same kept-alive connection: the GET's answer must start right
        # after the HEAD's headers.
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: news.example\r\n\r\n"
            f"GET {path} HTTP/1.1\r\nHost: news.example\r\nConnection: close\r\n\r\n".encode()
        )
        buffer = bytearray()
        head_status, head_headers = _read_head(sock, buffer)
        get_status, get_headers = _read_head(sock, buffer)
        while chunk := sock.recv(65536):
            buffer += chunk
    assert head_status == get_status == "HTTP/1.1 200 OK"
    for name in ("content-length", "content-type", "etag", "cache-control"):
        assert head_headers[name] == get_headers[name]
    assert len(buffer) == int(get_headers["content-length"])


# --- Allow -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/articles", "GET, HEAD, POST"),
        ("PUT", "/v1/feeds/1", "GET, HEAD, PATCH, DELETE"),
        ("POST", "/v1/articles/1", "GET, HEAD"),  # a read by key
        ("PATCH", "/v1/admin/webhooks/1", "GET, HEAD, DELETE"),
        ("TRACE", "/takedown", "GET, HEAD, POST"),  # a page
    ],
)
def test_a_405_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == f"{method} is not allowed on {path}."


def test_allow_matches_the_openapi_document_on_every_path(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    templates = {
        template: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
        for template in paths
    }
    for template in paths:
        path = re.sub(r"\{[^}]+\}", "1", template)
        # What the document routes for the path: its own methods and those of any template it
        # also matches (/v1/feeds/opml is a /v1/feeds/{feed_id} too); GET routes answer HEAD.
        documented = {
            method.upper()
            for other, pattern in templates.items()
            if pattern.match(path)
            for method in paths[other]
        }
        if "GET" in documented:
            documented.add("HEAD")
        response = client.options(path)
        assert response.status_code == 405, path
        assert set(response.headers["allow"].split(", ")) == documented, path


# --- 415 ---------------------------------------------------------------------------------


def test_a_json_body_sent_as_another_type_is_a_415_problem(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    feed = client.post(
        "/v1/feeds", json={"url": "https://www.reuters.com/feed.xml"}, headers=ingest_headers
    )
    assert feed.status_code == 201, feed.text
    body = b'{"title": "x"}'
    cases = [
        ("POST", "/v1/articles", ingest_headers, "text/plain"),
        ("POST", "/v1/articles", ingest_headers, None),  # a body without a type
        ("POST", "/v1/articles/batch", ingest_headers, "application/x-www-form-urlencoded"),
        ("POST", "/v1/feeds", ingest_headers, "text/plain; charset=utf-8"),
        ("PATCH", f"/v1/feeds/{feed.json()['id']}", ingest_headers, "text/plain"),
        ("POST", "/v1/admin/keys", admin_headers, "multipart/form-data; boundary=x"),
        ("POST", "/v1/takedowns", {}, "text/plain"),
    ]
    for method, path, headers, content_type in cases:
        sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
        response = client.request(method, path, content=body, headers=sent)
        assert response.status_code == 415, (path, content_type, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/unsupported-media-type")


def test_json_types_xml_imports_and_form_posts_are_still_taken(
    app: FastAPI, client: TestClient, ingest_headers: dict[str, str], article: dict[str, Any]
) -> None:
    created = client.post(
        "/v1/articles",
        content=httpx.Request("POST", "/", json=article_payload(2)).content,
        headers={**ingest_headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert created.status_code == 201, created.text
    invalid = client.post(
        "/v1/articles", json={"title": "x"}, headers=ingest_headers
    )  # JSON that breaks the schema is still a 422
    assert invalid.status_code == 422
    opml = (
        b'<?xml version="1.0"?><opml version="2.0"><body>'
        b'<outline type="rss" xmlUrl="https://apnews.com/feed.xml"/></body></opml>'
    )
    imported = client.post(
        "/v1/feeds/opml", content=opml, headers={**ingest_headers, "Content-Type": "text/x-opml"}
    )
    assert imported.status_code == 200, imported.text
    with TestClient(app, base_url="https://news.example") as browser:
        # The rights holders' form, form-encoded: filed, and answered with its page.
        page = post_form(browser, targets=article["url"])
        assert page.status_code == 202, page.text[:300]
        assert page.headers["content-type"].startswith("text/html")


# --- query dates ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0.5", "1700000000", "20240101"])
def test_a_query_date_that_is_a_number_is_refused_naming_the_parameter(
    client: TestClient, value: str
) -> None:
    for path in ("/v1/articles", "/v1/articles.json"):
        response = client.get(path, params={"published_before": value})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "published_before"


def test_a_query_date_is_a_date_or_a_date_time_with_its_offset(
    client: TestClient, article: dict[str, Any]
) -> None:
    # The article was published at 2023-03-20T10:01:00Z.
    for after, count in [
        ("2023-03-20", 1),  # a date: from its start, UTC
        ("2023-03-21", 0),
        ("2023-03-20T10:00:00Z", 1),
        ("2023-03-20T11:00:00+01:00", 1),
        ("2023-03-20T10:02:00Z", 0),
    ]:
        response = client.get("/v1/articles", params={"published_after": after})
        assert response.status_code == 200, (after, response.text)
        assert len(response.json()["items"]) == count, after
    naive = client.get("/v1/articles", params={"published_after": "2023-03-20T10:00:00"})
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "published_after"


# --- heads on the wire ----------------------------------------------------------------------


def _exchange(server: Server, request: bytes, *, pieces: int = 1) -> bytes:
    """Send `request` (in one write, or in `pieces` writes) and read the answer to the close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        size = -(-len(request) // pieces)
        try:
            for offset in range(0, len(request), size):
                sock.sendall(request[offset : offset + size])
        except OSError:
            pass  # the server may answer and half-close while the client still sends
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _problem_status(answer: bytes) -> int:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in head.lower(), answer[:300]
    assert f'"status":{status}'.encode() in body, answer[:500]
    return status


@pytest.mark.parametrize("pieces", [1, 8])
def test_a_100_kb_query_string_is_a_414_problem(server: Server, pieces: int) -> None:
    request = b"GET /v1/articles?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _problem_status(_exchange(server, request, pieces=pieces)) == 414


@pytest.mark.parametrize("size", [100_000, 140_000])
@pytest.mark.parametrize("pieces", [1, 8])
def test_headers_over_the_limit_are_a_431_problem_however_they_arrive(
    server: Server, size: int, pieces: int
) -> None:
    request = b"GET /v1/articles HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * size + b"\r\n\r\n"
    assert _problem_status(_exchange(server, request, pieces=pieces)) == 431


def test_a_head_just_under_the_limit_and_a_large_body_are_served(
    server: Server, ingest_headers: dict[str, str]
) -> None:
    filler = "a" * (MAX_HEAD_BYTES - 2000)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/articles", headers={"X-Filler": filler}).status_code == 200
        # A body far larger than the limit, arriving with its head, is not counted as head.
        batch = {
            "items": [article_payload(n, body_html="<p>" + "b" * 2000 + "</p>") for n in range(60)]
        }
        response = client.post("/v1/articles/batch", json=batch, headers=ingest_headers)
        assert response.status_code == 200, response.text


def test_a_request_that_is_not_http_is_a_400_problem(server: Server) -> None:
    assert _problem_status(_exchange(server, b"NOT HTTP AT ALL\r\n\r\n")) == 400


# --- /docs ---------------------------------------------------------------------------------


class _References(HTMLParser):
    """Every URL a page loads (src, href) and whether it has an inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(str(values[name]))
        self._in_script_without_src = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script_without_src = False


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


def test_docs_load_every_asset_from_the_app_under_a_strict_csp(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    policy = _directives(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for values in policy.values():
        assert not any(re.match(r"https?:|\*|'unsafe-", value) for value in values), policy
    references = _References()
    references.feed(page.text)
    assert references.inline_scripts == 0
    assert len(references.urls) == 4  # icon, stylesheet, Swagger UI, its start-up script
    for url in references.urls:
        assert url.startswith("/docs/assets/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in {
            "text/javascript",
            "text/css",
            "image/png",
        }
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert b"cdn.jsdelivr.net" not in asset.content
    assert client.get("/docs/assets/../main.py").status_code == 404
    assert client.get("/docs/assets/nothing.js").status_code == 404
    # The page FastAPI serves by default loads ReDoc from a CDN: it is not served.
    assert client.get("/redoc").status_code == 404


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (Debian's `chromium` package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


def test_docs_render_in_a_browser_that_reaches_nothing_but_the_app(
    server: Server, browser: Any
) -> None:
    page = browser.new_page()
    elsewhere: list[str] = []
    problems: list[str] = []
    # Anything the page asks of another origin is refused, as a firewall would, and noted.
    page.route(
        re.compile(r"^(?!" + re.escape(server.url) + ").*"),
        lambda route: (elsewhere.append(route.request.url), route.abort()),
    )
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock-tag", timeout=30_000)
    operations = page.locator(".opblock").count()
    page.close()
    assert elsewhere == []
    assert problems == []  # a CSP violation is a console error
    assert operations >= 40
