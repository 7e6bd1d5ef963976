"""API keys created and revoked through the JSON admin API are audited under the acting
key's name, as the console's are (app/takedowns/audit.py); the secret never is."""

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.factories import audit_log


def test_creating_and_revoking_a_key_are_audited_under_the_acting_key_name(
    client: TestClient, engine: Engine, admin_headers: dict[str, str]
) -> None:
    created = client.post(
        "/v1/admin/keys",
        json={"name": "verified-pub", "scope": "publisher", "domain": "news.reuters.com"},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    key = created.json()
    revoked = client.delete(f"/v1/admin/keys/{key['id']}", headers=admin_headers)
    assert revoked.status_code == 200

    assert audit_log(engine) == [
        (
            "api_key_created",
            "operator",
            f"key {key['id']} 'verified-pub', scope publisher, domain reuters.com",
        ),
        ("api_key_revoked", "operator", f"key {key['id']} 'verified-pub', scope publisher"),
    ]
    assert key["secret"] not in str(audit_log(engine))


def test_a_refused_key_change_writes_no_audit_row(
    client: TestClient, engine: Engine, admin_headers: dict[str, str]
) -> None:
    refused = client.post(
        "/v1/admin/keys", json={"name": "pub", "scope": "publisher"}, headers=admin_headers
    )
    assert refused.status_code == 422
    assert client.delete("/v1/admin/keys/999", headers=admin_headers).status_code == 404
    assert audit_log(engine) == []
