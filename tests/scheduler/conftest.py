"""Runners on the test database with a FrozenClock; they never sleep."""

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.scheduler.runner import RemovalActions, RemovalRunner, takedown_actions

MakeRunner = Callable[..., RemovalRunner]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        scheduler="off",
        public_base_url="https://news.example",
        mail_dir=tmp_path / "mail",
        scheduler_batch_size=10,
        scheduler_lease_seconds=60,
        scheduler_max_attempts=3,
    )


@pytest.fixture
def actions() -> RemovalActions:
    return takedown_actions()


@pytest.fixture
def make_runner(
    engine: Engine, settings: Settings, clock: FrozenClock, app: FastAPI, actions: RemovalActions
) -> MakeRunner:
    """A runner on the test database; it counts into the app's /metrics."""

    def make(owner: str = "test-runner", **overrides: object) -> RemovalRunner:
        options: dict[str, object] = {
            "engine": engine,
            "settings": settings,
            "clock": clock,
            "owner": owner,
            "actions": actions,
            "metrics": app.state.removal_counters,
        }
        options.update(overrides)
        return RemovalRunner(**options)  # type: ignore[arg-type]

    return make
