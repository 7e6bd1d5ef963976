"""create_app(): routers, error handlers, middleware and the lifespan."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from app import auth_routes, health
from app.articles import routes as articles
from app.clock import Clock, SystemClock
from app.config import Settings, get_settings, settings_or_exit
from app.db import create_db_engine
from app.errors import install_error_handlers, problem_schemas
from app.limits import BodySizeLimit
from app.observability import AccessLogAndMetrics, Metrics, configure_logging


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="byline",
        version="0.1.0",
        summary="Articles with attribution, and takedowns carried out within 24 hours.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.clock = clock
    app.state.metrics = Metrics()
    refreshers: list[Callable[[], None]] = []
    app.state.metric_refreshers = refreshers

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth_routes.router)
    app.include_router(articles.router)

    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET"],
            allow_headers=["If-None-Match"],
            expose_headers=["ETag", "Link", "Location"],
            max_age=600,
        )
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(AccessLogAndMetrics, metrics=app.state.metrics)
    _declare_problem_schema(app)
    return app


def serve_app() -> FastAPI:
    """The uvicorn factory used by `byline serve`: JSON logs, then the app."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    return create_app(settings)


def _declare_problem_schema(app: FastAPI) -> None:
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(problem_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
