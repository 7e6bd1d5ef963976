"""Plain-function factories for article payloads and ingests through the real API."""

from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient


def article_payload(n: int = 1, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": f"Flood defences hold in river town {n}",
        "body_html": f"<p>Residents of town {n} watched the water rise.</p><p>Barriers held.</p>",
        "source_url": f"https://www.example-news.com/2023/03/20/story-{n}",
        "publisher": {"name": "Example News", "url": "https://www.example-news.com"},
        "authors": [{"name": "Jane Reporter", "url": "https://www.example-news.com/jane"}],
        "published_at": f"2023-03-20T10:{n % 60:02d}:00Z",
        "language": "en",
        "tags": ["weather", "local"],
    }
    payload.update(overrides)
    return payload


def ingest(
    client: TestClient, headers: dict[str, str], n: int = 1, **overrides: Any
) -> dict[str, Any]:
    response = client.post("/v1/articles", json=article_payload(n, **overrides), headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()["article"]


def ingest_all(
    client: TestClient, headers: dict[str, str], payloads: Sequence[dict[str, Any]]
) -> list[int]:
    """Ingest `payloads` through the batch API (500 a request), each one created; their ids
    in order."""
    ids: list[int] = []
    for offset in range(0, len(payloads), 500):
        items = list(payloads[offset : offset + 500])
        response = client.post("/v1/articles/batch", json={"items": items}, headers=headers)
        assert response.status_code == 200, response.text
        results = response.json()["items"]
        assert all(item["status"] == "created" for item in results), results
        ids.extend(item["id"] for item in results)
    return ids
