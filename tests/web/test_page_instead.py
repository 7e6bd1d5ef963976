"""A page route refuses by raising PageInstead: what it wrote is rolled back like any error's,
and the page is drawn afterwards on a session that sees only what was kept."""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from app.clock import RequestNow
from app.db import WriteSessionDep, new_session
from app.takedowns.models import Block
from app.web.pages import PageInstead


def _blocks(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Block)) or 0)


def test_a_refused_page_keeps_nothing_and_is_drawn_on_a_fresh_session(
    app: FastAPI, engine: Engine
) -> None:
    @app.post("/test-only/refused-page")
    def refused(session: WriteSessionDep, now: RequestNow) -> Response:
        session.add(Block(kind="url", value="https://news.example/a", created_at=now))
        session.flush()
        assert _blocks(session) == 1  # written, not yet kept

        def page(fresh: Session) -> Response:
            return HTMLResponse(f"<p>{_blocks(fresh)} blocks</p>", status_code=409)

        raise PageInstead(page)

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/test-only/refused-page")
    assert (answer.status_code, answer.text) == (409, "<p>0 blocks</p>")
    with new_session(engine) as session:
        assert _blocks(session) == 0
