"""The pages are tested as a browser on https://news.example sees them (`web_client`), the
console's by an operator signed in with `admin_key`."""

import pytest
from sqlalchemy import Engine

from app.auth import Scope
from tests.factories import make_key


@pytest.fixture
def admin_key(engine: Engine) -> str:
    return make_key(engine, Scope.admin, "operator-ana")
