"""Plain-function factories for article payloads and ingests through the real API."""

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
