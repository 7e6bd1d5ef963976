"""Webhook endpoints changed through the JSON admin API are audited under the acting key's
name, as the console's changes are (app/takedowns/audit.py)."""

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from app.clock import FrozenClock
from app.db import new_session, writer
from app.notifications.models import WebhookEndpoint
from tests.factories import audit_log
from tests.notifications.conftest import Receiver
from tests.notifications.factories import register


def test_registering_enabling_and_deleting_an_endpoint_are_audited_under_the_key_name(
    client: TestClient,
    engine: Engine,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    receiver: Receiver,
) -> None:
    created = register(client, admin_headers, receiver.url, ["article.removed"])
    with new_session(writer(engine)) as session, session.begin():
        session.execute(update(WebhookEndpoint).values(disabled_at=clock.now()))
    enabled = client.post(f"/v1/admin/webhooks/{created['id']}/enable", headers=admin_headers)
    assert enabled.status_code == 200
    deleted = client.delete(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers)
    assert deleted.status_code == 204

    where = f"endpoint {created['id']} {receiver.url}"
    assert audit_log(engine) == [
        ("webhook_created", "operator", f"{where}, events article.removed"),
        ("webhook_enabled", "operator", where),
        ("webhook_deleted", "operator", where),
    ]
    assert created["secret"] not in str(audit_log(engine))


def test_a_refused_change_writes_no_audit_row(
    client: TestClient, engine: Engine, admin_headers: dict[str, str]
) -> None:
    bad = client.post(
        "/v1/admin/webhooks", json={"url": "ftp://x.example/", "events": []}, headers=admin_headers
    )
    assert bad.status_code == 422
    assert client.delete("/v1/admin/webhooks/99", headers=admin_headers).status_code == 404
    assert client.post("/v1/admin/webhooks/99/enable", headers=admin_headers).status_code == 404
    assert audit_log(engine) == []
