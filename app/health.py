"""Liveness, readiness and metrics."""

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app.errors import ProblemError, problem_responses
from app.migrate import current_revision, head_revision

router = APIRouter(tags=["operations"])
logger = logging.getLogger("byline.health")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    revision: str | None


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
def readyz(request: Request) -> Readiness:
    """The database is reachable and migrated to the newest revision."""
    engine = request.app.state.engine
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        logger.warning("readiness: database unreachable: %s", type(exc).__name__)
        raise ProblemError(503, "unavailable", "The database is unreachable.") from None
    expected = head_revision()
    if revision != expected:
        raise ProblemError(
            503, "unavailable", f"The database is at revision {revision}, not {expected}."
        )
    return Readiness(status="ready", database=engine.dialect.name, revision=revision)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    for refresh in request.app.state.metric_refreshers:
        refresh()
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
