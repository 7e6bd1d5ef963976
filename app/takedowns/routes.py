"""Public routes for rights holders: file a takedown, confirm the address, follow it,
withdraw it. Thin: the rules live in filing.py and service.py."""

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from sqlmodel import Session

from app.auth import OptionalPublisherKey
from app.clock import RequestNow
from app.db import ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.takedowns import appeals, service
from app.takedowns import filing as filings
from app.takedowns.models import Takedown
from app.takedowns.ratelimit import client_address
from app.takedowns.schemas import (
    AppealIn,
    ConfirmIn,
    TakedownFiled,
    TakedownIn,
    TakedownPublic,
    TargetPublic,
)

router = APIRouter(prefix="/v1/takedowns", tags=["takedowns"])

TokenQuery = Annotated[
    str | None,
    Query(max_length=200, description="The status token (or send `Authorization: Bearer`)."),
]
AuthorizationHeader = Annotated[str | None, Header(include_in_schema=False)]


def _token(token: str | None, authorization: str | None) -> str | None:
    if token:
        return token
    scheme, _, credentials = (authorization or "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


@router.post(
    "",
    response_model=TakedownFiled,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(400, 401, 403, 413, 422, 429),
)
def file_takedown(
    filing: TakedownIn,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
    publisher: OptionalPublisherKey,
) -> TakedownFiled:
    """Ask us to remove content; removal is due within 24 hours of receipt. Nothing happens
    until the claimant confirms the address by the link we e-mail, unless the request comes
    with a publisher key (`Authorization: Bearer`) for the domain it names."""
    settings = request.app.state.settings
    filed = filings.file_takedown(
        session=session,
        filing=filing,
        client_address=client_address(request),
        settings=settings,
        now=now,
        publisher=publisher,
    )
    takedown = filed.takedown
    response.headers["Cache-Control"] = "no-store"
    return TakedownFiled(
        id=takedown.id,
        status=takedown.status,
        received_at=takedown.received_at,
        due_at=takedown.due_at,
        status_token=filed.token,
        status_url=f"{settings.public_base_url}/v1/takedowns/{takedown.id}?token={filed.token}",
        confirmation="not_needed" if publisher is not None else "emailed",
        targets=[TargetPublic.of(view) for view in filed.targets],
    )


@router.post(
    "/{takedown_id}/confirm",
    response_model=TakedownPublic,
    responses=problem_responses(404, 409, 410, 422, 429),
)
def confirm_takedown(
    takedown_id: Annotated[str, Path(max_length=36)],
    body: ConfirmIn,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
) -> TakedownPublic:
    """Confirm the claimant's address with the code of the e-mailed link: the request then
    takes effect (at once, or after the review window, as its proof allows)."""
    takedown = filings.confirm_takedown(
        session=session,
        takedown_id=takedown_id,
        code=body.code,
        settings=request.app.state.settings,
        now=now,
    )
    response.headers["Cache-Control"] = "no-store"
    return TakedownPublic.of(takedown, service.takedown_targets(session=session, takedown=takedown))


@router.get("/{takedown_id}", response_model=TakedownPublic, responses=problem_responses(404))
def get_takedown(
    takedown_id: str,
    response: Response,
    session: ReadSessionDep,
    token: TokenQuery = None,
    authorization: AuthorizationHeader = None,
) -> TakedownPublic:
    """Where a request stands, for the holder of its token."""
    takedown = service.get_for_claimant(
        session=session, takedown_id=takedown_id, token=_token(token, authorization)
    )
    response.headers["Cache-Control"] = "no-store"
    return _public(session, takedown)


def _public(session: Session, takedown: Takedown) -> TakedownPublic:
    return TakedownPublic.of(
        takedown,
        service.takedown_targets(session=session, takedown=takedown),
        appeals.appeal_of(session=session, takedown_id=takedown.id),
    )


@router.post(
    "/{takedown_id}/withdraw", response_model=TakedownPublic, responses=problem_responses(404, 409)
)
def withdraw_takedown(
    takedown_id: str,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
    token: TokenQuery = None,
    authorization: AuthorizationHeader = None,
) -> TakedownPublic:
    """Withdraw a request before any of its removals ran."""
    takedown = service.withdraw_takedown(
        session=session,
        takedown_id=takedown_id,
        token=_token(token, authorization),
        now=now,
    )
    response.headers["Cache-Control"] = "no-store"
    return TakedownPublic.of(takedown, service.takedown_targets(session=session, takedown=takedown))


@router.post(
    "/{takedown_id}/appeal",
    response_model=TakedownPublic,
    responses=problem_responses(404, 409, 410, 422),
)
def appeal_takedown(
    takedown_id: Annotated[str, Path(max_length=36)],
    body: AppealIn,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
    token: TokenQuery = None,
    authorization: AuthorizationHeader = None,
) -> TakedownPublic:
    """Appeal a rejection, once, within 6 months of it (410 after): an operator other than
    the one who rejected the request decides within `BYLINE_APPEAL_REVIEW_DAYS`."""
    appeals.file_appeal(
        session=session,
        takedown_id=takedown_id,
        token=_token(token, authorization),
        statement=body.statement,
        settings=request.app.state.settings,
        now=now,
    )
    response.headers["Cache-Control"] = "no-store"
    return _public(session, service.get_takedown(session=session, takedown_id=takedown_id))
