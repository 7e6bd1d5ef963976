"""An operator can bind a publisher key to a domain without DNS: `byline keys create
--scope publisher --domain`, or POST /v1/admin/keys. The domain is required there, refused
everywhere else, and its registrable domain is kept."""

import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from app.cli import cli
from tests.takedowns.factories import assert_problem, bearer, filing, ingest

SECRET = re.compile(r"^byl_[A-Za-z0-9_-]{43}$", re.MULTILINE)


def run(byline: CliRunner, *args: str) -> Result:
    return byline.invoke(cli, list(args))


def test_keys_create_binds_a_publisher_key_to_the_registrable_domain(
    byline: CliRunner, client: TestClient, ingest_headers: dict[str, str]
) -> None:
    """--domain www.reuters.com makes a key for reuters.com: it lists the articles of
    reuters.com and files takedowns of them, and nothing of another domain."""
    create = ["keys", "create", "--name", "x", "--scope", "publisher"]
    result = run(byline, *create, "--domain", "www.reuters.com")
    assert result.exit_code == 0, result.output
    assert re.search(r"^key \d+ \(publisher, reuters\.com\) for x;", result.output, re.MULTILINE)
    secret = SECRET.search(result.output)
    assert secret, result.output
    key = bearer(secret.group(0))

    listed = run(byline, "keys", "list")
    assert listed.exit_code == 0, listed.output
    assert "\tpublisher\treuters.com\tx\t" in listed.output

    ours = ingest(client, ingest_headers, 1, host="uk.reuters.com")
    theirs = ingest(client, ingest_headers, 2, host="www.bbc.co.uk")
    items = client.get("/v1/publisher/articles", headers=key).json()["items"]
    assert [item["id"] for item in items] == [ours["id"]]
    filed = client.post("/v1/takedowns", json=filing([ours["id"]]), headers=key)
    assert filed.status_code == 202 and filed.json()["confirmation"] == "not_needed"
    refused = client.post("/v1/takedowns", json=filing([theirs["id"]]), headers=key)
    assert_problem(refused, 403)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "publisher"], "--domain is required for --scope publisher"),
        (["--scope", "ingest", "--domain", "reuters.com"], "and only for it"),
        (["--scope", "publisher", "--domain", "co.uk"], "--domain is a public suffix"),
        (["--scope", "publisher", "--domain", "https://reuters.com/"], "--domain must be"),
    ],
)
def test_keys_create_refuses_a_missing_or_misplaced_domain_with_exit_2(
    byline: CliRunner, args: list[str], message: str
) -> None:
    result = run(byline, "keys", "create", "--name", "x", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "byl_" not in result.output
    listed = run(byline, "keys", "list")
    assert listed.exit_code == 0 and listed.output == ""  # no key was made


def test_admin_api_makes_publisher_keys_only_with_a_domain(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    keys = "/v1/admin/keys"
    missing = client.post(keys, json={"name": "x", "scope": "publisher"}, headers=admin_headers)
    problem = assert_problem(missing, 422)
    assert "domain is required for scope publisher" in problem["detail"]
    misplaced = client.post(
        keys, json={"name": "x", "scope": "ingest", "domain": "reuters.com"}, headers=admin_headers
    )
    assert_problem(misplaced, 422)

    created = client.post(
        keys,
        json={"name": "x", "scope": "publisher", "domain": "uk.reuters.com"},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["scope"], body["domain"]) == ("publisher", "reuters.com")
    listing = client.get("/v1/publisher/articles", headers=bearer(body["secret"]))
    assert listing.status_code == 200
