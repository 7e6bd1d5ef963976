"""Settings of the scheduler tests; workers come from tests/workers.py, on the test database
and a FrozenClock, so they never sleep."""

from pathlib import Path

import pytest

from app.config import Settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        scheduler="off",
        public_base_url="https://news.example",
        mail_dir=tmp_path / "mail",
        scheduler_batch_size=10,
        removal_batch_size=10,
        scheduler_lease_seconds=60,
        scheduler_max_attempts=3,
    )
