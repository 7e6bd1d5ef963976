"""The `byline` command: serve, migrate, keys, feeds (and worker, for background work)."""

import os
import shutil
import signal
import tempfile
from collections import Counter
from types import FrameType
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import background
from app.articles.urls import registrable_domain
from app.auth import Scope, create_api_key, list_api_keys, revoke_api_key
from app.clock import SystemClock
from app.config import settings_or_exit
from app.db import create_db_engine, new_session, writer
from app.errors import ProblemError
from app.feeds import service as feeds
from app.feeds.models import FeedState
from app.jobs.wakeups import StopSignal
from app.jobs.worker import JobCounters
from app.main import serve_app
from app.migrate import current_revision, head_revision, upgrade_to_head
from app.observability import (
    MULTIPROCESS_DIRECTORY,
    configure_logging,
    mark_process_dead_at_exit,
)
from app.takedowns.schemas import Domain
from app.timeouts import SlowClientGuard

# Per API process: connections (kept-alive ones included) plus requests in flight. Far
# above what one process serves well (the thread pool runs 40 handlers at a time), so only
# a flood meets the 503; slow clients are cut off by the head timeout long before.
LIMIT_CONCURRENCY = 1000
# Connections the kernel queues while every process is busy accepting (Linux caps it at
# net.core.somaxconn).
BACKLOG = 2048

cli = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__
)
keys = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
cli.add_typer(keys, name="keys")
feeds_cli = typer.Typer(no_args_is_help=True, help="Subscribe to publishers' feeds, list them.")
cli.add_typer(feeds_cli, name="feeds")
CLI_ACTOR = "cli"


def migrated_engine() -> Engine:
    """An engine on a database at head; otherwise one clear line and exit 1."""
    engine = create_db_engine(settings_or_exit().database_url)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        typer.echo(f"byline: database unreachable: {exc.__class__.__name__}", err=True)
        raise typer.Exit(1) from None
    if revision != head_revision():
        typer.echo("byline: the database is not migrated; run `byline migrate` first", err=True)
        raise typer.Exit(1)
    return engine


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="API processes.")] = 1,
    migrate: Annotated[bool, typer.Option(help="Migrate the database to head first.")] = True,
) -> None:
    """Serve the API (and, with BYLINE_SCHEDULER=embedded, the removal scheduler)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    if migrate:
        upgrade_to_head(settings.database_url)
    metrics_directory = None
    if workers > 1:
        # A fresh directory per run, where every API process counts and /metrics adds them
        # up (app/observability.py); files left by an earlier run would count twice.
        metrics_directory = tempfile.mkdtemp(prefix="byline-metrics-")
        os.environ[MULTIPROCESS_DIRECTORY] = metrics_directory
    try:
        _serve(settings.forwarded_allow_ips, host=host, port=port, workers=workers)
    finally:
        if metrics_directory is not None:
            shutil.rmtree(metrics_directory, ignore_errors=True)


def api_process_app() -> FastAPI:
    """The uvicorn factory of `byline serve`, called in each API process."""
    mark_process_dead_at_exit()
    return serve_app()


def _serve(forwarded_allow_ips: str, *, host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "app.cli:api_process_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        # Slow clients: a request head must arrive within BYLINE_HEADER_TIMEOUT_SECONDS and
        # fit in 64 KiB (SlowClientGuard, app/timeouts.py); an idle kept-alive connection
        # closes after 5 s; past LIMIT_CONCURRENCY connections or requests per process the
        # answer is a 503 problem rather than an ever longer queue.
        http=SlowClientGuard,
        timeout_keep_alive=5,
        limit_concurrency=LIMIT_CONCURRENCY,
        backlog=BACKLOG,
        timeout_graceful_shutdown=20,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@cli.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run a single tick, then exit.")] = False,
    concurrency: Annotated[
        int, typer.Option(min=1, max=32, help="Runners in this process, each claiming batches.")
    ] = 1,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve this process's /metrics on this port."),
    ] = None,
    test_pause_after_removal: Annotated[
        float,
        typer.Option(
            hidden=True,
            min=0,
            help="Test hook: pause this long after each removal, so a test can kill the "
            "worker between two rows of one batch.",
        ),
    ] = 0.0,
) -> None:
    """Run the background work as its own process: removals (with `--concurrency` workers)
    and, on one more worker, webhooks, e-mails and the daily re-check of publishers' DNS
    records (SIGTERM/SIGINT: finish the rows in hand, give the rest back, exit)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    engine = migrated_engine()
    counters = None
    if metrics_port is not None:
        registry = CollectorRegistry()
        counters = JobCounters(registry)
        start_http_server(metrics_port, registry=registry)
    workers = background.workers(
        engine=engine,
        settings=settings,
        clock=SystemClock(),
        name="worker",
        removal_workers=concurrency,
        counters=counters,
        pause_after_removal=test_pause_after_removal,
    )
    if once:
        stop = _stop_on_signals(StopSignal())
        results = [each.run_once(stop=stop) for each in workers]
        background.close(workers)
        engine.dispose()
        outcomes = sum((result.outcomes for result in results), Counter[tuple[str, str]]())
        claimed = sum((result.claimed for result in results), Counter[str]())
        counts = {"claimed": claimed["removal"]} | {
            outcome: outcomes[("removal", outcome)]
            for outcome in ("removed", "already_removed", "cancelled", "retried", "failed")
        }
        typer.echo(", ".join(f"{key.replace('_', ' ')} {n}" for key, n in counts.items()))
        typer.echo(
            f"webhooks delivered {outcomes[('webhook', 'delivered')]}, "
            f"e-mails sent {outcomes[('email', 'sent')]}"
        )
        return
    running = background.background_workers(workers, engine)
    _stop_on_signals(running.stop_event)
    running.start()
    # The main thread only waits: signal handlers run here, between the waits.
    while not running.stop_event.wait(0.5):
        pass
    running.stop()
    background.close(workers)
    engine.dispose()


def _stop_on_signals(stop: StopSignal) -> StopSignal:
    """`stop`, set by SIGTERM or SIGINT: workers finish the rows in hand and stop."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        typer.echo(f"byline worker: {signal.Signals(signum).name}, stopping", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


@cli.command()
def migrate() -> None:
    """Migrate the database to the newest revision."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    upgrade_to_head(settings.database_url)
    typer.echo("database migrated to head")


def _key_domain(scope: Scope, domain: str | None) -> str | None:
    """The registrable domain a new key is bound to: required for a publisher key, refused
    for any other (one clear line and exit 2)."""
    if (scope == Scope.publisher) != (domain is not None):
        typer.echo("byline: --domain is required for --scope publisher, and only for it", err=True)
        raise typer.Exit(2)
    if domain is None:
        return None
    try:
        host = TypeAdapter(Domain).validate_python(domain)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        typer.echo(f"byline: --domain {message}", err=True)
        raise typer.Exit(2) from None
    return registrable_domain(host)


@keys.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. 'reuters-crawler'.")],
    scope: Annotated[Scope, typer.Option(help="ingest, admin or publisher.")],
    domain: Annotated[
        str | None,
        typer.Option(
            help="For --scope publisher (and only there): the domain the key speaks for; its "
            "registrable domain is kept. Publishers usually prove theirs by DNS instead "
            "(/publishers/verify)."
        ),
    ] = None,
) -> None:
    """Create a key and print its secret (shown this once; only a hash is stored)."""
    bound_to = _key_domain(scope, domain)
    engine = migrated_engine()
    with new_session(writer(engine)) as session, session.begin():
        key, secret = create_api_key(
            session=session, name=name, scope=scope, domain=bound_to, now=SystemClock().now()
        )
        key_id = key.id
    what = f"{scope.value}, {bound_to}" if bound_to else scope.value
    typer.echo(f"key {key_id} ({what}) for {name}; keep this secret, it is not shown again:")
    typer.echo(secret)


@keys.command("list")
def keys_list() -> None:
    """List keys (id, scope, domain, name, hint, created, revoked)."""
    engine = migrated_engine()
    with new_session(engine) as session:
        for key in list_api_keys(session=session):
            revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
            typer.echo(
                f"{key.id}\t{key.scope}\t{key.domain or '-'}\t{key.name}\t{key.key_hint}...\t"
                f"{key.created_at.isoformat()}\trevoked: {revoked}"
            )


@keys.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key; it stops authenticating at once."""
    engine = migrated_engine()
    with new_session(writer(engine)) as session, session.begin():
        revoke_api_key(session=session, key_id=key_id, now=SystemClock().now())
    typer.echo(f"key {key_id} revoked")


@feeds_cli.command("add")
def feeds_add(
    url: Annotated[str, typer.Argument(help="The feed's absolute http(s) URL.")],
    publisher: Annotated[
        str | None, typer.Option(help="Credited on its articles (default: the feed's title).")
    ] = None,
) -> None:
    """Subscribe to a feed; the running service fetches it at once."""
    settings = settings_or_exit()
    engine = migrated_engine()
    try:
        with new_session(writer(engine)) as session, session.begin():
            _feed_url(url)
            feed = feeds.subscribe(
                session=session,
                url=url,
                publisher_name=publisher,
                publisher_url=None,
                language=None,
                tags=(),
                actor=CLI_ACTOR,
                now=SystemClock().now(),
                allow_private=settings.allow_private_networks,
            )
            feed_id = feed.id
    except ProblemError as exc:
        typer.echo(f"byline: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"feed {feed_id} added: {url}")


def _feed_url(url: str) -> None:
    try:
        feeds.FEED_URL.validate_python(url)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        typer.echo(f"byline: URL {message}", err=True)
        raise typer.Exit(2) from None


@feeds_cli.command("list")
def feeds_list(
    status: Annotated[FeedState | None, typer.Option(help="Only active, paused or gone.")] = None,
) -> None:
    """List feeds (id, status, next fetch, last status, errors in a row, URL)."""
    engine = migrated_engine()
    after_id = None
    with new_session(engine) as session:
        while page := feeds.list_feeds(session=session, state=status, after_id=after_id, limit=500):
            for feed in page:
                next_fetch = feed.run_at.isoformat() if feed.run_at else "-"
                typer.echo(
                    f"{feed.id}\t{feed.state}\t{next_fetch}\t{feed.last_status or '-'}\t"
                    f"errors: {feed.consecutive_errors}\t{feed.url}"
                )
            after_id = page[-1].id


@feeds_cli.command("import")
def feeds_import(
    path: Annotated[
        typer.FileBinaryRead, typer.Argument(help="An OPML file (a feed reader's export).")
    ],
) -> None:
    """Subscribe to every feed of an OPML file; one line per feed: created, exists or invalid."""
    settings = settings_or_exit()
    engine = migrated_engine()
    try:
        with new_session(writer(engine)) as session, session.begin():
            items = feeds.import_opml(
                session=session,
                document=path.read(),
                actor=CLI_ACTOR,
                now=SystemClock().now(),
                allow_private=settings.allow_private_networks,
            )
    except ProblemError as exc:
        typer.echo(f"byline: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    for item in items:
        why = "; ".join(e.message for e in item.errors or [])
        typer.echo(f"{item.status}\t{item.id or '-'}\t{item.url}" + (f"\t{why}" if why else ""))


def main() -> None:
    cli()
