"""Public routes for rights holders: file a takedown, follow it, withdraw it. Thin: the
rules live in service.py."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from app.db import ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.takedowns import service
from app.takedowns.schemas import TakedownFiled, TakedownIn, TakedownPublic, TargetPublic

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


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "",
    response_model=TakedownFiled,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": TakedownFiled, "description": "A duplicate: the existing request"},
        **problem_responses(400, 413, 422, 429),
    },
)
def file_takedown(
    filing: TakedownIn, request: Request, response: Response, session: WriteSessionDep
) -> TakedownFiled:
    """Ask us to remove content; removal is due within 24 hours of receipt."""
    settings = request.app.state.settings
    filed = service.file_takedown(
        session=session,
        filing=filing,
        client_address=_client_address(request),
        settings=settings,
        now=request.app.state.clock.now(),
    )
    takedown = filed.takedown
    status_url = f"{settings.public_base_url}/v1/takedowns/{takedown.id}"
    if filed.duplicate:
        response.status_code = status.HTTP_200_OK
    else:
        status_url += f"?token={filed.token}"
    response.headers["Cache-Control"] = "no-store"
    return TakedownFiled(
        id=takedown.id,
        status=takedown.status,
        received_at=takedown.received_at,
        due_at=takedown.due_at,
        status_token=filed.token,
        status_url=status_url,
        duplicate=filed.duplicate,
        targets=[TargetPublic.of(view) for view in filed.targets],
    )


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
    return TakedownPublic.of(takedown, service.takedown_targets(session=session, takedown=takedown))


@router.post(
    "/{takedown_id}/withdraw", response_model=TakedownPublic, responses=problem_responses(404, 409)
)
def withdraw_takedown(
    takedown_id: str,
    request: Request,
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
        now=request.app.state.clock.now(),
    )
    response.headers["Cache-Control"] = "no-store"
    return TakedownPublic.of(takedown, service.takedown_targets(session=session, takedown=takedown))
