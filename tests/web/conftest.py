"""The pages are tested as a browser on https://news.example sees them: its `__Host-` CSRF
cookie is Secure, so the test client must speak https to get it back."""

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient


@pytest.fixture
def web_client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://news.example", raise_server_exceptions=False) as client:
        yield client
