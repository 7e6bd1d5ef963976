"""Servers under test: started pinned to one core, waited for, and always stopped."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.targets import BENCH_DIR, DATA_DIR, OUT_DIR

SERVER_CPU = "0"
CLIENT_CPU = "1"
REPO = BENCH_DIR.parent
PYTHON = REPO / ".venv" / "bin" / "python"
DATASETTE = DATA_DIR / "venv-datasette" / "bin" / "datasette"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def byline_env(database_url: str) -> dict[str, str]:
    """The environment of a production `byline serve` on this database (JSON logs at INFO);
    the removal scheduler is off, so that only requests use the server's core."""
    return {
        **os.environ,
        "BYLINE_DATABASE_URL": database_url,
        "BYLINE_SCHEDULER": "off",
        "BYLINE_LOG_LEVEL": "INFO",
        "BYLINE_PUBLIC_BASE_URL": "https://news.example",
    }


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not answer {url} within {timeout:.0f} s")


@contextmanager
def serving(
    name: str,
    command: Sequence[str | Path],
    *,
    ready_url: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` on the server core until the block ends; its output goes to bench/out/."""
    OUT_DIR.mkdir(exist_ok=True)
    with (OUT_DIR / f"{name}.log").open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *map(str, command)],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_up(ready_url, process, timeout)
            log(f"{name} is up (pid {process.pid}, cpu {SERVER_CPU})")
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def byline_reads_server(database_url: str, port: int) -> tuple[list[str | Path], dict[str, str]]:
    """The production app plus the bench-only ceiling routes (bench/ceiling_app.py)."""
    return [PYTHON, "-m", "bench.ceiling_app", "--port", str(port)], byline_env(database_url)


def byline_server(database_url: str, port: int) -> tuple[list[str | Path], dict[str, str]]:
    """`byline serve` exactly as the README runs it."""
    command: list[str | Path] = [REPO / ".venv" / "bin" / "byline", "serve", "--no-migrate"]
    return [*command, "--port", str(port)], byline_env(database_url)


# The article as byline serves it (the same columns, publisher joined), as a canned query.
DATASETTE_ARTICLE_SQL = """
SELECT a.id, a.slug, a.title, a.excerpt, a.language, a.tags, a.image_url, a.image_alt,
       a.published_at, a.updated_at, a.source_url, a.canonical_url, a.source_domain, a.authors,
       a.license, a.first_seen_at, a.removed_at, a.removed_by_takedown_id, a.content_hash,
       a.body_html, p.name AS publisher_name, p.url AS publisher_url
FROM articles a JOIN publishers p ON p.id = a.publisher_id WHERE a.id = :id
"""


def datasette_server(sqlite_file: Path, port: int) -> list[str | Path]:
    """Datasette with its defaults (one process) on the same SQLite file, plus a canned query
    `article` that returns what byline's route returns."""
    metadata = OUT_DIR / "datasette-metadata.json"
    OUT_DIR.mkdir(exist_ok=True)
    metadata.write_text(
        json.dumps(
            {"databases": {sqlite_file.stem: {"queries": {"article": DATASETTE_ARTICLE_SQL}}}}
        )
    )
    return [
        *(DATASETTE, "serve", sqlite_file, "--metadata", metadata),
        *("--port", str(port), "--host", "127.0.0.1"),
    ]
