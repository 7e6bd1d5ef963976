"""What byline's logs hold: never a URL's query string (a feed's or a webhook's token)."""

import logging
from collections.abc import Iterator

import pytest

from app.observability import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    root.handlers[:], root.level = handlers, level
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def test_httpx_request_lines_with_their_urls_are_not_logged(restored_logging: None) -> None:
    configure_logging("INFO")
    assert logging.getLogger("byline.feeds").isEnabledFor(logging.INFO)
    for name in ("httpx", "httpcore", "httpcore.connection"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
        assert logging.getLogger(name).isEnabledFor(logging.WARNING)
