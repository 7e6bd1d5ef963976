"""Claimant name, e-mail and explanation reach operators only: never public answers, 451
bodies, metrics or logs."""

import logging
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.observability import JsonFormatter
from tests.articles.factories import article_payload
from tests.takedowns.factories import (
    CLAIMANT_EMAIL,
    CLAIMANT_NAME,
    EXPLANATION,
    confirmation_code,
    filing,
    ingest,
    tick,
)

SECRETS = (CLAIMANT_NAME, CLAIMANT_EMAIL, EXPLANATION, "Priya", "Confidential")


def assert_private(text: str) -> None:
    for secret in SECRETS:
        assert secret.lower() not in text.lower(), f"{secret!r} leaked"


def test_claimant_data_never_reaches_public_answers_451_bodies_metrics_or_logs(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    article = ingest(client, ingest_headers)
    other = ingest(client, ingest_headers, 2)
    public = []
    filed = client.post("/v1/takedowns", json=filing([article["id"]]))
    public.append(filed)
    token = filed.json()["status_token"]
    takedown_id = filed.json()["id"]
    duplicate = client.post("/v1/takedowns", json=filing([article["id"]]))
    public.append(duplicate)
    assert takedown_id not in duplicate.text  # a repeat learns nothing about the first
    code = confirmation_code(engine, takedown_id)
    public.append(client.post(f"/v1/takedowns/{takedown_id}/confirm", json={"code": "wrong"}))
    public.append(client.post(f"/v1/takedowns/{takedown_id}/confirm", json={"code": code}))
    public.append(client.post(f"/v1/takedowns/{takedown_id}/confirm", json={"code": code}))
    public.append(client.post("/v1/takedowns", json={**filing([other["id"]]), "accurate": 0}))
    bad_email = filing([other["id"]], claimant={"email": "Priya Claimant-Secret <legal@>"})
    public.append(client.post("/v1/takedowns", json=bad_email))
    public.append(client.get(f"/v1/takedowns/{takedown_id}?token={token}"))
    public.append(client.get(f"/v1/takedowns/{takedown_id}?token=wrong"))
    tick(engine, settings, clock)
    public.append(client.get(f"/v1/articles/{article['id']}"))
    public.append(client.get(f"/v1/articles/by-slug/{article['slug']}"))
    public.append(client.get("/v1/articles"))
    again = article_payload(1, source_url=article["attribution"]["source_url"])
    public.append(client.post("/v1/articles", json=again, headers=ingest_headers))
    public.append(client.post("/v1/takedowns", json=filing([other["id"]])))
    withdrawn = public[-1].json()
    public.append(
        client.post(f"/v1/takedowns/{withdrawn['id']}/withdraw?token={withdrawn['status_token']}")
    )
    clock.advance(timedelta(hours=1))
    public.append(client.get("/metrics"))
    public.append(client.get("/v1/transparency"))
    for response in public:
        assert response.status_code < 500, response.text
        assert_private(response.text)
        assert_private(str(response.headers))
    assert {r.status_code for r in public} >= {200, 202, 404, 409, 422, 451}
    # Operators do see it.
    detail = client.get(f"/v1/admin/takedowns/{takedown_id}", headers=admin_headers).text
    assert CLAIMANT_EMAIL in detail and EXPLANATION in detail
    formatter = JsonFormatter()
    # httpx is the test client's own logger; everything else is the server's.
    server = [record for record in caplog.records if not record.name.startswith("httpx")]
    logged = "\n".join(formatter.format(record) for record in server)
    assert "takedown" in logged  # the access log saw the requests...
    assert token not in logged  # ...but never a query string
    assert code not in logged  # ...nor a confirmation code
    assert_private(logged)
