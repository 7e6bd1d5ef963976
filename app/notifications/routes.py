"""Operators register webhook endpoints and read their delivery logs (scope `admin`)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.auth import AdminKey
from app.clock import RequestNow
from app.cursor import link_next_page, parse_int, seal, unseal
from app.db import MAX_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.jobs.models import JobStatus
from app.notifications import webhooks
from app.notifications.schemas import (
    DeliveriesPublic,
    DeliveryPublic,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointPublic,
    WebhookEndpointsPublic,
)

router = APIRouter(
    prefix="/v1/admin/webhooks", tags=["admin"], responses=problem_responses(401, 403)
)

EndpointId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
_CURSOR_KEY = b"byline-webhook-deliveries-cursor-v1"


@router.post(
    "",
    response_model=WebhookEndpointCreated,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 409, 422),
)
def create_webhook(
    body: WebhookEndpointIn,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> WebhookEndpointCreated:
    """Register an endpoint at a public address (any address with
    BYLINE_ALLOW_PRIVATE_NETWORKS), audited; the signing secret is in this answer only."""
    endpoint, secret = webhooks.create_endpoint(
        session=session,
        url=body.url,
        events=body.events,
        actor=principal.name,
        now=now,
        allow_private=request.app.state.settings.allow_private_networks,
    )
    public = WebhookEndpointPublic.of(endpoint, pending=0)
    return WebhookEndpointCreated(**public.model_dump(), secret=secret)


@router.get("", response_model=WebhookEndpointsPublic)
def list_webhooks(session: ReadSessionDep, _: AdminKey) -> WebhookEndpointsPublic:
    """Every endpoint with its health: active, failing (retrying), or disabled."""
    endpoints = webhooks.list_endpoints(session=session)
    pending = webhooks.pending_deliveries(
        session=session, endpoint_ids=[e.id for e in endpoints if e.id is not None]
    )
    return WebhookEndpointsPublic(
        items=[WebhookEndpointPublic.of(e, pending=pending.get(e.id or 0, 0)) for e in endpoints]
    )


@router.get(
    "/{endpoint_id}", response_model=WebhookEndpointPublic, responses=problem_responses(404)
)
def get_webhook(
    endpoint_id: EndpointId, session: ReadSessionDep, _: AdminKey
) -> WebhookEndpointPublic:
    """One endpoint with its health."""
    endpoint = webhooks.get_endpoint(session=session, endpoint_id=endpoint_id)
    pending = webhooks.pending_deliveries(session=session, endpoint_ids=[endpoint_id])
    return WebhookEndpointPublic.of(endpoint, pending=pending.get(endpoint_id, 0))


@router.delete(
    "/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404)
)
def delete_webhook(
    endpoint_id: EndpointId,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> Response:
    """Delete an endpoint and its delivery log (audited); nothing more is sent to it."""
    webhooks.delete_endpoint(
        session=session,
        endpoint_id=endpoint_id,
        actor=principal.name,
        now=now,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{endpoint_id}/enable", response_model=WebhookEndpointPublic, responses=problem_responses(404)
)
def enable_webhook(
    endpoint_id: EndpointId,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> WebhookEndpointPublic:
    """Enable a disabled endpoint (audited): its pending deliveries resume, new events reach
    it again."""
    endpoint = webhooks.enable_endpoint_audited(
        session=session,
        endpoint_id=endpoint_id,
        actor=principal.name,
        now=now,
    )
    pending = webhooks.pending_deliveries(session=session, endpoint_ids=[endpoint_id])
    return WebhookEndpointPublic.of(endpoint, pending=pending.get(endpoint_id, 0))


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=DeliveriesPublic,
    responses=problem_responses(400, 404, 422),
)
def list_webhook_deliveries(
    endpoint_id: EndpointId,
    request: Request,
    response: Response,
    session: ReadSessionDep,
    _: AdminKey,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> DeliveriesPublic:
    """The endpoint's delivery log, newest first: attempts, last answer, last error."""
    before_id = parse_int(unseal(_CURSOR_KEY, cursor, 1)[0]) if cursor else None
    rows = webhooks.list_deliveries(
        session=session, endpoint_id=endpoint_id, status=status, before_id=before_id, limit=limit
    )
    next_cursor = seal(_CURSOR_KEY, str(rows[-1][0].id)) if len(rows) == limit else None
    link_next_page(request, response, next_cursor)
    return DeliveriesPublic(
        items=[DeliveryPublic.of(delivery, event) for delivery, event in rows],
        next_cursor=next_cursor,
    )
