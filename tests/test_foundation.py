"""The service skeleton: health, errors as problem+json, keys, limits, metrics, settings."""

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from app.auth import Scope, revoke_api_key
from app.clock import FrozenClock
from app.config import Settings, SettingsError, load_settings
from app.db import create_db_engine, new_session
from app.main import create_app
from app.observability import AccessLog, _timestamp
from tests.articles.factories import article_payload
from tests.factories import make_key
from tests.takedowns.factories import assert_problem


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_migrated_database(client: TestClient, engine: Engine) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == engine.dialect.name


def test_readyz_answers_503_when_database_is_not_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=f"sqlite:///{tmp_path}/empty.db", scheduler="off")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert_problem(client.get("/readyz"), 503)


def test_readyz_answers_503_when_database_is_unreachable() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1",
        scheduler="off",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert_problem(client.get("/readyz"), 503)


def test_unknown_route_is_problem_404(client: TestClient) -> None:
    body = assert_problem(client.get("/nope"), 404)
    assert "/nope" in body["detail"]


def test_wrong_method_is_problem_405(client: TestClient) -> None:
    assert_problem(client.delete("/healthz"), 405)


def test_body_over_limit_is_413_before_parsing(client: TestClient) -> None:
    big = b"x" * (2 * 1024 * 1024 + 1)
    response = client.post("/healthz", content=big, headers={"content-type": "application/json"})
    assert_problem(response, 413)


def test_streamed_body_over_limit_is_413(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(300):
            yield b"y" * 10_000

    # No Content-Length: the limit is counted as the body arrives.
    response = client.post("/v1/articles", content=chunks(), headers=ingest_headers)
    assert_problem(response, 413)


def test_locked_database_is_a_503_problem_not_a_500(
    engine: Engine, settings: Settings, ingest_headers: dict[str, str]
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single-writer lock")
    impatient = create_db_engine(settings.database_url)

    @event.listens_for(impatient, "connect")
    def _short_busy_timeout(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    locker = engine.raw_connection()
    locker.execute("BEGIN EXCLUSIVE")  # type: ignore[attr-defined]
    try:
        app = create_app(settings, engine=impatient, clock=FrozenClock())
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post("/v1/articles", json=article_payload(), headers=ingest_headers)
    finally:
        locker.rollback()
        locker.close()
        impatient.dispose()
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/no/such/route/123")
    text = client.get("/metrics").text
    assert 'byline_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="<unmatched>"' in text
    assert "/no/such/route/123" not in text
    assert "byline_http_request_duration_seconds_bucket" in text


def test_metrics_method_label_is_bounded(client: TestClient) -> None:
    for n in range(3):
        client.request(f"BREW{n}", "/healthz")
    text = client.get("/metrics").text
    assert 'method="OTHER",route="/healthz",status="405"' in text
    assert "BREW" not in text


def test_access_log_writes_one_json_line_per_request(
    app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.getLogger("byline.access").setLevel(logging.INFO)
    try:
        with TestClient(app) as client:
            client.get("/healthz")
            client.get("/v1/articles/12345?q=secret")
        # Lines still waiting for their batch are written when the app shuts down.
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        logging.getLogger("byline.access").setLevel(logging.NOTSET)
    assert [(line["route"], line["path"], line["status"]) for line in lines] == [
        ("/healthz", "/healthz", 200),
        ("/v1/articles/{article_id}", "/v1/articles/12345", 404),
    ]
    assert all(line["logger"] == "byline.access" and line["method"] == "GET" for line in lines)
    assert "secret" not in json.dumps(lines)  # query strings carry status tokens


def test_access_log_batches_lines_and_flushes_when_full(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger("byline.access").setLevel(logging.INFO)
    access_log = AccessLog()

    async def requests(count: int) -> None:
        for n in range(count):
            access_log.record("GET", f"/v1/articles/{n}", "/v1/articles/{article_id}", 200, 0.001)

    try:
        asyncio.run(requests(AccessLog.FLUSH_LINES - 1))
        assert capsys.readouterr().err == ""  # waiting for the timer (or the next batch)
        asyncio.run(requests(1))
        written = capsys.readouterr().err.splitlines()
        assert len(written) == AccessLog.FLUSH_LINES
        logging.getLogger("byline.access").setLevel(logging.WARNING)
        asyncio.run(requests(5))
        access_log.flush()
        assert capsys.readouterr().err == ""  # not enabled at this level
    finally:
        logging.getLogger("byline.access").setLevel(logging.NOTSET)


def test_access_log_lines_are_what_json_dumps_writes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line is written without json.dumps, for speed; it must be the same bytes, for
    any path a client sends (quotes, backslashes, control and non-ASCII characters)."""
    logging.getLogger("byline.access").setLevel(logging.INFO)
    access_log = AccessLog()
    paths = [
        "/v1/articles/1",
        '/a"b\\c',
        "/tab\there\nnewline",
        "/caf\u00e9/\u2603/\U0001f600",
        "/\x7f\x01",
    ]
    cases = [
        ("GET", path, "/v1/articles/{article_id}", status, seconds)
        for path in paths
        for status, seconds in ((200, 0.000123), (404, 1.5), (503, 12.345678), (201, 0.0))
    ]
    now = 1_764_300_000.9996
    monkeypatch.setattr("app.observability.time.time", lambda: now)

    async def requests() -> None:
        for method, path, route, status, seconds in cases:
            access_log.record(method, path, route, status, seconds)
        access_log.flush()

    try:
        asyncio.run(requests())
        written = capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger("byline.access").setLevel(logging.NOTSET)
    expected = [
        json.dumps(
            {
                "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "level": "info",
                "logger": "byline.access",
                "message": "request",
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            }
        )
        for method, path, route, status, seconds in cases
    ]
    assert written == expected


def test_log_timestamps_are_datetimes_isoformat() -> None:
    """Formatted once per second, the timestamps still read as datetime writes them,
    across second boundaries and fractions that round up to the next second."""
    rng = random.Random(7)
    start = 1_764_300_000.0
    moments = [start + rng.uniform(0, 5) for _ in range(2_000)]
    moments += [
        start + 0.9999996,
        start + 1.9999994,
        start + 2.0,
        start + 2.0005,
        start - 0.0000004,
    ]
    for moment in sorted(moments) + moments:
        assert _timestamp(moment) == datetime.fromtimestamp(moment, UTC).isoformat(
            timespec="milliseconds"
        ), moment


def test_openapi_lists_v1_routes_and_problem_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "Problem" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_missing_key_is_401_with_challenge(client: TestClient, admin_route: str) -> None:
    response = client.get(admin_route)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_key_is_401(client: TestClient, admin_route: str) -> None:
    response = client.get(admin_route, headers={"Authorization": "Bearer byl_wrong"})
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_key_with_wrong_scope_is_403(
    client: TestClient, admin_route: str, ingest_headers: dict[str, str]
) -> None:
    assert_problem(client.get(admin_route, headers=ingest_headers), 403)


def test_admin_key_is_accepted(
    client: TestClient, admin_route: str, admin_headers: dict[str, str]
) -> None:
    assert client.get(admin_route, headers=admin_headers).status_code == 200


def test_revoked_key_stops_authenticating(
    client: TestClient, engine: Engine, admin_route: str
) -> None:
    secret = make_key(engine, Scope.admin)
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get(admin_route, headers=headers).status_code == 200
    with new_session(engine) as session, session.begin():
        revoke_api_key(session=session, key_id=1, now=FrozenClock().now())
    assert_problem(client.get(admin_route, headers=headers), 401)


def test_bad_setting_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYLINE_SCHEDULER", "sometimes")
    with pytest.raises(SettingsError, match="BYLINE_SCHEDULER"):
        load_settings()


def test_review_window_leaving_under_an_hour_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYLINE_TAKEDOWN_REVIEW_WINDOW", "PT23H30M")
    with pytest.raises(SettingsError, match="REVIEW_WINDOW"):
        load_settings()


def test_bad_rate_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYLINE_TAKEDOWN_RATE_PER_EMAIL", "ten per hour")
    with pytest.raises(SettingsError, match="BYLINE_TAKEDOWN_RATE_PER_EMAIL"):
        load_settings()


def test_cli_with_bad_setting_exits_with_one_line() -> None:
    env = {**os.environ, "BYLINE_DATABASE_URL": "mysql://nope"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "migrate"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "byline: invalid setting BYLINE_DATABASE_URL: must start with sqlite:// or "
        "postgresql+psycopg://"
    ]


def test_cli_keys_create_prints_a_key_that_authenticates(
    client: TestClient, database_url: str, admin_route: str
) -> None:
    env = {**os.environ, "BYLINE_DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "app", "keys", "create", "--name", "ops", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("byl_")
    response = client.get(admin_route, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    listing = subprocess.run(
        [sys.executable, "-m", "app", "keys", "list"], env=env, capture_output=True, text=True
    )
    assert "ops" in listing.stdout and secret not in listing.stdout


def test_serving_process_tunes_the_garbage_collector(tmp_path: Path) -> None:
    """`byline serve`'s app factory leaves start-up objects frozen and young objects collected
    in larger passes (in a process of its own: it changes the whole interpreter)."""
    script = (
        "import gc; from app.main import GC_THRESHOLDS, serve_app; serve_app();"
        " print(gc.get_threshold() == GC_THRESHOLDS, gc.get_freeze_count() > 10_000)"
    )
    env = {
        **os.environ,
        "BYLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'gc.db'}",
        "BYLINE_SCHEDULER": "off",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True"]
