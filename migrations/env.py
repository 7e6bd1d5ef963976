"""Alembic environment: one history for SQLite (batch mode) and PostgreSQL."""

from typing import Any

from alembic import context

from app.config import settings_or_exit
from app.db import create_db_engine
from app.migrate import include_object
from app.models import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or settings_or_exit().database_url
    engine = create_db_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several processes may start at once; one migrates, the others wait for it.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7310431)")
        context.run_migrations()


run_migrations()
