"""One Alembic history for both engines: it round-trips and matches the models."""

from sqlalchemy import Engine, inspect

from app.db import create_db_engine
from app.migrate import (
    current_revision,
    downgrade_to_base,
    head_revision,
    schema_differences,
    upgrade_to_head,
)
from app.models import metadata


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_upgrade_downgrade_upgrade_round_trips(database_url: str, engine: Engine) -> None:
    downgrade_to_base(database_url)
    scratch = create_db_engine(database_url)
    try:
        leftover = set(inspect(scratch).get_table_names()) - {"alembic_version"}
        assert leftover == set()
        upgrade_to_head(database_url)
        assert current_revision(scratch) == head_revision()
        assert set(metadata.tables) <= set(inspect(scratch).get_table_names())
        assert schema_differences(scratch) == []
    finally:
        scratch.dispose()
