"""The production app plus two bench-only routes that answer from memory: the framework's
ceiling for `GET /v1/articles/{id}`. Never part of the production app.

- `/bench/ceiling/{article_id}`: an `ArticlePublic` built at start-up from a real article,
  returned through the same declared response model, the same `ETag`/`Cache-Control` headers
  and the same middleware as the real route; only the database read and the row-to-model
  conversion are missing. This is the ceiling ratio (a) is measured against.
- `/bench/ceiling-bytes/{article_id}`: the same document already encoded to JSON bytes:
  the floor of what any route costs in this app and server (reported for reference).

Served like `byline serve` (same uvicorn options, JSON logs at BYLINE_LOG_LEVEL):

    python -m bench.ceiling_app --port 8001
"""

import argparse
import random
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from sqlalchemy import func, select

from app.articles import routes, service
from app.articles.schemas import ArticlePublic
from app.cli import BACKLOG, LIMIT_CONCURRENCY
from app.config import settings_or_exit
from app.db import new_session
from app.errors import ProblemError
from app.main import create_app, tune_garbage_collection
from app.observability import configure_logging
from app.timeouts import SlowClientGuard

DOCUMENTS = 1_000


def _documents(app: FastAPI) -> list[tuple[ArticlePublic, bytes, str]]:
    """DOCUMENTS real articles drawn at random over the table, as models and as JSON."""
    base = str(app.state.settings.public_base_url)
    with new_session(app.state.engine) as session:
        top = session.scalar(select(func.max(service.A.c.id))) or 0
        rng = random.Random(5)
        documents = []
        while len(documents) < min(DOCUMENTS, top):
            try:
                row = service.get_article(
                    session=session, article_id=rng.randint(1, top), blocked_by=base
                )
            except ProblemError:
                continue
            article = routes._article(row, base)
            documents.append(
                (article, article.model_dump_json().encode(), routes.etag_of(row.content_hash))
            )
    return documents


def create_ceiling_app() -> FastAPI:
    """`app.main.create_app` as `byline serve` builds it, plus the two ceiling routes."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    app = create_app(settings)
    documents = _documents(app)
    headers = {"Cache-Control": routes.READ_CACHE_CONTROL}

    async def ceiling(article_id: int, response: Response) -> Any:
        article, _, etag = documents[article_id % len(documents)]
        response.headers.update({**headers, "ETag": etag})
        return article

    async def ceiling_bytes(article_id: int) -> Response:
        _, body, etag = documents[article_id % len(documents)]
        return Response(body, media_type="application/json", headers={**headers, "ETag": etag})

    # Routing walks the routes in order: the ceiling goes on the app's own router just before
    # the reads by key (mounted first by create_app, app/fastpath), so that reaching it costs
    # no more than reaching the real route.
    first_read = _position_of_reads_by_key(app)
    app.router.add_api_route(
        "/bench/ceiling/{article_id}", ceiling, methods=["GET"], response_model=ArticlePublic
    )
    app.router.add_api_route("/bench/ceiling-bytes/{article_id}", ceiling_bytes, methods=["GET"])
    for _ in range(2):
        app.router.routes.insert(first_read, app.router.routes.pop())
    tune_garbage_collection()  # as serve_app does
    return app


def _position_of_reads_by_key(app: FastAPI) -> int:
    paths = {read.path for read in routes.ARTICLE_READS}
    for index, route in enumerate(app.router.routes):
        if getattr(route, "path", None) in paths:
            return index
    raise LookupError("the reads by key are not on the app's router")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # The options of `byline serve` (app/cli.py), so the server is the production one.
    uvicorn.run(
        "bench.ceiling_app:create_ceiling_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_config=None,
        http=SlowClientGuard,
        timeout_keep_alive=5,
        limit_concurrency=LIMIT_CONCURRENCY,
        backlog=BACKLOG,
        timeout_graceful_shutdown=20,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings_or_exit().forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
