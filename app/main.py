"""create_app(): routers, error handlers, middleware and the lifespan."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from app import auth_routes, background, health
from app.articles import routes as articles
from app.clock import Clock, SystemClock
from app.config import Settings, get_settings, settings_or_exit
from app.console import routes as console
from app.console.access import FormExpired, form_expired_page
from app.db import create_db_engine
from app.docs import docs_router
from app.errors import install_error_handlers
from app.fastpath import FastPath
from app.feeds import out as feeds_out
from app.feeds import routes as feeds
from app.http_methods import HeadAsGet
from app.inputs import RefuseNulCharacters
from app.jobs.worker import BackgroundWorkers, JobCounters, Worker
from app.limits import BodySizeLimit
from app.notifications import routes as webhook_admin
from app.notifications.metrics import install_outbox_metrics
from app.observability import AccessLog, AccessLogAndMetrics, Metrics, configure_logging
from app.openapi import install_openapi
from app.publishers import routes as publishers
from app.scheduler import routes as removals
from app.scheduler.metrics import install_removal_metrics
from app.takedowns import admin_routes as takedown_admin
from app.takedowns import routes as takedowns
from app.takedowns import transparency_routes as transparency
from app.timeouts import RequestTimeout
from app.web import publisher_routes as publisher_pages
from app.web import routes as web
from app.web.pages import PageInstead, page_instead

logger = logging.getLogger("byline.app")

# Shutdown waits this long for the embedded workers' rows in hand to commit.
SCHEDULER_STOP_TIMEOUT_SECONDS = 15.0


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the application; tests pass their own engine and a FrozenClock."""
    settings = settings or get_settings()
    engine = engine or create_db_engine(settings.database_url)
    clock = clock or SystemClock()
    fast_path = FastPath(engine, enabled=settings.fast_reads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await fast_path.open()
        embedded: list[Worker] = []
        running: BackgroundWorkers | None = None
        if settings.scheduler == "embedded":
            embedded = background.workers(
                engine=engine,
                settings=settings,
                clock=clock,
                name="embedded",
                counters=app.state.job_counters,
            )
            running = background.background_workers(embedded, engine)
            running.start()
        try:
            yield
        finally:
            app.state.access_log.flush()
            await fast_path.close()
            if running is not None:
                stopped = await asyncio.to_thread(running.stop, SCHEDULER_STOP_TIMEOUT_SECONDS)
                if not stopped:
                    logger.error("embedded workers did not stop in time; their leases will expire")
                background.close(embedded)

    app = FastAPI(
        title="byline",
        version="0.1.0",
        summary="Articles with attribution, and takedowns carried out within 24 hours.",
        lifespan=lifespan,
        # byline exports Prometheus metrics (/metrics) and JSON logs; FastAPI's native
        # OpenTelemetry asked the global providers whether to trace on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served by app/docs.py from this app, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.clock = clock
    app.state.metrics = Metrics()
    app.state.access_log = AccessLog()
    refreshers: list[Callable[[], None]] = []
    app.state.metric_refreshers = refreshers
    app.state.job_counters = JobCounters(app.state.metrics.registry)
    install_removal_metrics(
        registry=app.state.metrics.registry, refreshers=refreshers, engine=engine, clock=clock
    )
    install_outbox_metrics(
        registry=app.state.metrics.registry, refreshers=refreshers, engine=engine
    )

    install_error_handlers(app)
    app.add_exception_handler(FormExpired, form_expired_page)
    app.add_exception_handler(PageInstead, page_instead)
    # Routes are matched in order: the reads by key, what frontends request most, first.
    fast_path.mount(app.router, articles.ARTICLE_READS)
    app.include_router(feeds_out.router)
    app.include_router(articles.router)
    app.include_router(feeds.router)
    app.include_router(health.router)
    app.include_router(auth_routes.router)
    app.include_router(removals.router)
    app.include_router(takedowns.router)
    app.include_router(takedown_admin.router)
    app.include_router(transparency.router)
    app.include_router(webhook_admin.router)
    app.include_router(publishers.router)
    app.include_router(web.router)
    app.include_router(publisher_pages.router)
    app.include_router(console.router)
    app.include_router(docs_router(title=app.title, openapi_url=str(app.openapi_url)))
    # Last: tried only by a request that no route above answers (GET never reaches it).
    app.router.routes.append(HeadAsGet())

    app.add_middleware(RefuseNulCharacters)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET"],
            allow_headers=["If-None-Match"],
            expose_headers=["ETag", "Link", "Location"],
            max_age=600,
        )
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_seconds)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(
        AccessLogAndMetrics, metrics=app.state.metrics, access_log=app.state.access_log
    )
    install_openapi(app)
    return app


# A request allocates thousands of objects. With CPython's default thresholds (700, 10, 10)
# a collection ran every few requests, promoting the objects of the requests in flight, and
# the full collections that followed walked the whole heap: the app and its libraries.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    """For a serving process, once the app is built: what start-up made lives as long as
    the process, so it is moved out of the collector's sight (gc.freeze), and young objects
    are collected in larger, rarer passes."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve_app() -> FastAPI:
    """The uvicorn factory used by `byline serve`: JSON logs, the app, then the collector
    tuned for serving."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_garbage_collection()
    return app
