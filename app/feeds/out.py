"""byline's own feeds of live articles: Atom and JSON Feed 1.1."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["articles"])
