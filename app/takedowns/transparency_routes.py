"""GET /v1/transparency: the public figures of the 24-hour promise."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.clock import RequestNow
from app.db import ReadSessionDep
from app.errors import FieldError, InvalidInput, problem_responses
from app.takedowns.transparency import TransparencyReport, month_bounds, transparency_report

router = APIRouter(prefix="/v1", tags=["transparency"])

CACHE_CONTROL = "public, max-age=60"


@router.get("/transparency", response_model=TransparencyReport, responses=problem_responses(422))
def get_transparency(
    request: Request,
    now: RequestNow,
    response: Response,
    session: ReadSessionDep,
    month: Annotated[
        str | None,
        Query(
            description="Only requests received in this UTC month, e.g. 2026-01.",
            # Documented, and checked below with a message that says what a month is.
            json_schema_extra={"pattern": r"^[1-9]\d{3}-(0[1-9]|1[0-2])$"},
        ),
    ] = None,
) -> TransparencyReport:
    """Requests by reason and outcome, time to removal, share within 24 hours, breaches."""
    if month is not None:
        try:
            month_bounds(month)
        except ValueError:
            raise InvalidInput(
                [FieldError(field="month", message="must be a month as YYYY-MM, e.g. 2026-01")]
            ) from None
    response.headers["Cache-Control"] = CACHE_CONTROL
    return transparency_report(session=session, now=now, month=month)
