"""Where the benchmark databases live, for a given corpus size.

`BENCH_ROWS` (default 1,000,000) picks the corpus; `BENCH_POSTGRES_URL` the PostgreSQL server
(any database on it: the benchmark database is created next to it)."""

import os
from pathlib import Path

from sqlalchemy import make_url

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
OUT_DIR = BENCH_DIR / "out"
DEFAULT_ROWS = 1_000_000
POSTGRES_SERVER_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ENGINES = ("sqlite", "postgres")


def bench_rows() -> int:
    return int(os.environ.get("BENCH_ROWS", DEFAULT_ROWS))


def sqlite_path(rows: int) -> Path:
    return DATA_DIR / ("byline.db" if rows == DEFAULT_ROWS else f"byline-{rows}.db")


def postgres_database(rows: int) -> str:
    return "byline_bench" if rows == DEFAULT_ROWS else f"byline_bench_{rows}"


def database_url(engine: str, rows: int) -> str:
    if engine == "sqlite":
        return f"sqlite:///{sqlite_path(rows)}"
    url = make_url(POSTGRES_SERVER_URL).set(database=postgres_database(rows))
    return url.render_as_string(hide_password=False)


def postgres_admin_dsn() -> str:
    """libpq form of the server URL, for CREATE/DROP DATABASE."""
    url = make_url(POSTGRES_SERVER_URL).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def loaded_marker(engine: str, rows: int) -> Path:
    return DATA_DIR / f"loaded-{engine}-{rows}.done"
