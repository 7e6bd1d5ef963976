"""Operators review takedowns, read the audit log and manage blocks (scope `admin`). The key's
name is the actor in the audit log."""

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from sqlmodel import Session

from app.auth import AdminKey
from app.clock import RequestNow, request_now
from app.cursor import link_next_page
from app.db import MAX_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.takedowns import appeals, audit, blocks, service
from app.takedowns.cursor import decode_id, decode_received, encode_id, encode_received
from app.takedowns.models import Reason, Takedown, TakedownStatus
from app.takedowns.schemas import (
    AuditEventPublic,
    AuditEventsPublic,
    BlockPublic,
    BlocksPublic,
    EscalateIn,
    GrantIn,
    RejectIn,
    TakedownAdmin,
    TakedownsAdmin,
    TakedownSummary,
    UpholdIn,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403))

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=400, description="`next_cursor` of a page.")]
TakedownId = Annotated[str, Path(max_length=36)]


def _detail(request: Request, session: Session, takedown: Takedown) -> TakedownAdmin:
    return TakedownAdmin.detail(
        takedown,
        overdue=service.is_overdue(takedown, request_now(request)),
        open_removals=service.open_removals(session=session, takedown_id=takedown.id),
        targets=service.takedown_targets(session=session, takedown=takedown),
        appeal=appeals.appeal_of(session=session, takedown_id=takedown.id),
    )


@router.get("/takedowns", response_model=TakedownsAdmin, responses=problem_responses(400, 422))
def list_takedowns(
    request: Request,
    now: RequestNow,
    response: Response,
    session: ReadSessionDep,
    _: AdminKey,
    status: TakedownStatus | None = None,
    reason: Reason | None = None,
    overdue: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TakedownsAdmin:
    """Requests, oldest first; filter by status, reason, or overdue (open past due_at)."""
    rows = service.list_takedowns(
        session=session,
        status=status,
        reason=reason,
        overdue=overdue,
        after=decode_received(cursor) if cursor else None,
        limit=limit,
        now=now,
    )
    next_cursor = encode_received(rows[-1].received_at, rows[-1].id) if len(rows) == limit else None
    link_next_page(request, response, next_cursor)
    return TakedownsAdmin(
        items=[TakedownSummary.of(t, overdue=service.is_overdue(t, now)) for t in rows],
        next_cursor=next_cursor,
    )


@router.get(
    "/takedowns/{takedown_id}", response_model=TakedownAdmin, responses=problem_responses(404)
)
def get_takedown(
    takedown_id: TakedownId, request: Request, session: ReadSessionDep, _: AdminKey
) -> TakedownAdmin:
    """One request in full, claimant data included."""
    return _detail(request, session, service.get_takedown(session=session, takedown_id=takedown_id))


@router.post(
    "/takedowns/{takedown_id}/approve",
    response_model=TakedownAdmin,
    responses=problem_responses(404, 409),
)
def approve_takedown(
    takedown_id: TakedownId,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> TakedownAdmin:
    """Approve: the request's removals run now and its blocks hold."""
    takedown = service.approve_takedown(
        session=session,
        takedown_id=takedown_id,
        actor=principal.name,
        now=now,
    )
    return _detail(request, session, takedown)


@router.post(
    "/takedowns/{takedown_id}/reject",
    response_model=TakedownAdmin,
    responses=problem_responses(400, 404, 409, 422),
)
def reject_takedown(
    takedown_id: TakedownId,
    body: RejectIn,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> TakedownAdmin:
    """Reject before any removal, with the statement of reasons the claimant will read."""
    takedown = service.reject_takedown(
        session=session,
        takedown_id=takedown_id,
        actor=principal.name,
        reason=body.reason,
        now=now,
    )
    return _detail(request, session, takedown)


@router.post(
    "/takedowns/{takedown_id}/escalate",
    response_model=TakedownAdmin,
    responses=problem_responses(400, 404, 409, 422),
)
def escalate_takedown(
    takedown_id: TakedownId,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
    body: Annotated[EscalateIn | None, Body()] = None,
) -> TakedownAdmin:
    """Hold an undecided request: nothing is removed until an operator approves it."""
    takedown = service.escalate_takedown(
        session=session,
        takedown_id=takedown_id,
        actor=principal.name,
        reason=body.reason if body else None,
        now=now,
    )
    return _detail(request, session, takedown)


@router.post(
    "/takedowns/{takedown_id}/appeal/uphold",
    response_model=TakedownAdmin,
    responses=problem_responses(400, 404, 409, 422),
)
def uphold_rejection(
    takedown_id: TakedownId,
    body: UpholdIn,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> TakedownAdmin:
    """Decide an appeal: the rejection stands, with the statement of reasons the claimant
    will read. The key that rejected the request may not (403)."""
    appeals.uphold_rejection(
        session=session,
        takedown_id=takedown_id,
        actor=principal.name,
        reason=body.reason,
        now=now,
    )
    return _detail(request, session, service.get_takedown(session=session, takedown_id=takedown_id))


@router.post(
    "/takedowns/{takedown_id}/appeal/grant",
    response_model=TakedownAdmin,
    responses=problem_responses(400, 404, 409, 422),
)
def grant_appeal(
    takedown_id: TakedownId,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
    body: Annotated[GrantIn | None, Body()] = None,
) -> TakedownAdmin:
    """Decide an appeal: the request is approved after all and its removals run now. The key
    that rejected the request may not (403)."""
    appeals.grant_appeal(
        session=session,
        takedown_id=takedown_id,
        actor=principal.name,
        reason=body.reason if body else None,
        now=now,
    )
    return _detail(request, session, service.get_takedown(session=session, takedown_id=takedown_id))


@router.get("/audit", response_model=AuditEventsPublic, responses=problem_responses(400, 422))
def list_audit(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    _: AdminKey,
    takedown_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> AuditEventsPublic:
    """The append-only audit log, oldest first; `takedown_id` narrows it to one request."""
    rows = audit.list_events(
        session=session,
        takedown_id=takedown_id,
        after_id=decode_id(cursor) if cursor else None,
        limit=limit,
    )
    next_cursor = encode_id(rows[-1].id or 0) if len(rows) == limit else None
    link_next_page(request, response, next_cursor)
    return AuditEventsPublic(
        items=[AuditEventPublic.of(event) for event in rows], next_cursor=next_cursor
    )


@router.get("/blocks", response_model=BlocksPublic, responses=problem_responses(400, 422))
def list_blocks(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    _: AdminKey,
    active: bool | None = None,
    kind: Literal["url", "domain"] | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> BlocksPublic:
    """URLs and domains refused at ingest, oldest first; `active=true` leaves out lifted ones."""
    rows = blocks.list_blocks(
        session=session,
        active=active,
        kind=kind,
        after_id=decode_id(cursor) if cursor else None,
        limit=limit,
    )
    next_cursor = encode_id(rows[-1].id or 0) if len(rows) == limit else None
    link_next_page(request, response, next_cursor)
    return BlocksPublic(items=[BlockPublic.of(block) for block in rows], next_cursor=next_cursor)


@router.delete(
    "/blocks/{block_id}", response_model=BlockPublic, responses=problem_responses(404, 409, 422)
)
def lift_block(
    block_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
    reason: Annotated[str | None, Query(max_length=2000)] = None,
) -> BlockPublic:
    """Lift a block (audited): the URL or domain may be ingested again. Removed articles stay
    removed."""
    block = blocks.lift_block(
        session=session,
        block_id=block_id,
        actor=principal.name,
        reason=reason,
        now=now,
    )
    return BlockPublic.of(block)
