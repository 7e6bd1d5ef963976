"""The console's pages beside the queue: blocks (lift, with the reason), failed removals,
e-mails and webhook deliveries (retry), webhook endpoints (enable), API keys (create,
revoke), feeds' health. Each goes through its domain's service, as the JSON admin API does;
key and webhook changes and notification retries are audited under the operator's key name.
Every post checks its form token (`access.PostingOperatorDep`)."""

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Path, Query, Request, Response
from pydantic import ValidationError
from sqlmodel import Session

from app.auth import list_api_keys
from app.auth_routes import ApiKeyCreate
from app.console import access
from app.console import service as console
from app.console.sessions import Operator
from app.cursor import NextPage, page_url, parse_int, seal, unseal
from app.db import MAX_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import Conflict, NotFound
from app.feeds import service as feeds
from app.jobs.models import JobStatus
from app.notifications import failures, webhooks
from app.scheduler import queue as removals
from app.takedowns import blocks
from app.web.pages import PageInstead

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100
_CURSOR_KEY = b"byline-console-operations-v1"
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Cursor = Annotated[str | None, Query(max_length=400)]
Reason = Annotated[str, Form(max_length=2000)]


def _after(cursor: str | None) -> int | None:
    return parse_int(unseal(_CURSOR_KEY, cursor, 1)[0]) if cursor else None


def _next_page(request: Request, ids: list[int | None]) -> NextPage | None:
    if len(ids) < PAGE_SIZE:
        return None
    cursor = seal(_CURSOR_KEY, str(ids[-1]))
    return NextPage(cursor, page_url(request, cursor))


def _done(path: str, **outcome: str | int) -> Response:
    return access.redirect(f"{path}?{urlencode(outcome)}")


# Blocks ------------------------------------------------------------------------------------


def _blocks_page(
    request: Request,
    session: Session,
    operator: Operator,
    cursor: str | None = None,
    *,
    error: str | None = None,
    status: int = 200,
    lifted: int = 0,
) -> Response:
    rows = blocks.list_blocks(
        session=session, active=True, kind=None, after_id=_after(cursor), limit=PAGE_SIZE
    )
    return access.render(
        request,
        "blocks.html",
        operator,
        status=status,
        blocks=rows,
        next_page=_next_page(request, [row.id for row in rows]),
        error=error,
        lifted=lifted,
    )


@router.get("/admin/blocks")
def blocks_page(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    cursor: Cursor = None,
    lifted: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """URLs and domains refused at ingest, oldest first, each with a form to lift it."""
    return _blocks_page(request, session, operator, cursor, lifted=lifted)


@router.post("/admin/blocks/{block_id}/lift")
def lift_block(
    block_id: RowId,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    reason: Reason = "",
) -> Response:
    """Lift a block with the reason (audited): the URL or domain may be ingested again."""
    if not reason.strip():
        error = "Lifting a block needs a reason: it goes into the audit log."
        return _blocks_page(request, session, operator, error=error, status=422)
    try:
        blocks.lift_block(
            session=session,
            block_id=block_id,
            actor=operator.name,
            reason=reason.strip(),
            now=access.now_of(request),
        )
    except (Conflict, NotFound) as exc:
        detail = exc.detail
        raise PageInstead(
            lambda fresh: _blocks_page(request, fresh, operator, error=detail, status=409)
        ) from exc
    return _done("/admin/blocks", lifted=block_id)


# Failed removals ---------------------------------------------------------------------------


@router.get("/admin/removals")
def failed_removals(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    cursor: Cursor = None,
    retried: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """Removals that ran out of attempts: an operator's turn."""
    rows = removals.list_removals(
        session=session,
        status=JobStatus.failed,
        takedown_id=None,
        after_id=_after(cursor),
        limit=PAGE_SIZE,
    )
    return access.render(
        request,
        "removals.html",
        operator,
        jobs=rows,
        next_page=_next_page(request, [row.id for row in rows]),
        retried=retried,
    )


@router.post("/admin/removals/{job_id}/retry")
def retry_removal(
    job_id: RowId,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
) -> Response:
    """Queue a failed removal again, due now, with its attempts reset."""
    try:
        removals.retry_failed_removal(
            session=session, job_id=job_id, actor=operator.name, now=access.now_of(request)
        )
    except (Conflict, NotFound):
        return _done("/admin/removals", retried=0)
    return _done("/admin/removals", retried=job_id)


# Failed e-mails and webhook deliveries ---------------------------------------------------


def _emails_page(
    request: Request,
    session: Session,
    operator: Operator,
    cursor: str | None = None,
    *,
    retried: int = 0,
    error: str | None = None,
    status: int = 200,
) -> Response:
    rows = failures.list_failed_emails(session=session, after_id=_after(cursor), limit=PAGE_SIZE)
    return access.render(
        request,
        "emails.html",
        operator,
        status=status,
        emails=rows,
        next_page=_next_page(request, [row.id for row in rows]),
        retried=retried,
        error=error,
    )


@router.get("/admin/emails")
def failed_emails(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    cursor: Cursor = None,
    retried: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """E-mails to claimants and publishers that were not sent, with their last error."""
    return _emails_page(request, session, operator, cursor, retried=retried)


@router.post("/admin/emails/{email_id}/retry")
def retry_email(
    email_id: RowId,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
) -> Response:
    """Queue a failed e-mail again, due now, with its attempts reset (audited)."""
    try:
        failures.retry_failed_email(
            session=session, email_id=email_id, actor=operator.name, now=access.now_of(request)
        )
    except (Conflict, NotFound) as exc:
        detail, status = exc.detail, exc.status
        raise PageInstead(
            lambda fresh: _emails_page(request, fresh, operator, error=detail, status=status)
        ) from exc
    return _done("/admin/emails", retried=email_id)


def _deliveries_page(
    request: Request,
    session: Session,
    operator: Operator,
    cursor: str | None = None,
    *,
    retried: int = 0,
    error: str | None = None,
    status: int = 200,
) -> Response:
    rows = failures.list_failed_deliveries(
        session=session, after_id=_after(cursor), limit=PAGE_SIZE
    )
    return access.render(
        request,
        "deliveries.html",
        operator,
        status=status,
        deliveries=rows,
        next_page=_next_page(request, [row.id for row in rows]),
        retried=retried,
        error=error,
    )


@router.get("/admin/deliveries")
def failed_deliveries(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    cursor: Cursor = None,
    retried: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """Webhook deliveries given up after the retry window, with their last answer."""
    return _deliveries_page(request, session, operator, cursor, retried=retried)


@router.post("/admin/deliveries/{delivery_id}/retry")
def retry_delivery(
    delivery_id: RowId,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
) -> Response:
    """Queue a failed webhook delivery again, due now, its endpoint's backoff lifted
    (audited)."""
    try:
        failures.retry_failed_delivery(
            session=session,
            delivery_id=delivery_id,
            actor=operator.name,
            now=access.now_of(request),
        )
    except (Conflict, NotFound) as exc:
        detail, status = exc.detail, exc.status
        raise PageInstead(
            lambda fresh: _deliveries_page(request, fresh, operator, error=detail, status=status)
        ) from exc
    return _done("/admin/deliveries", retried=delivery_id)


# Webhooks ----------------------------------------------------------------------------------


@router.get("/admin/webhooks")
def webhook_endpoints(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    enabled: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """Webhook endpoints with their health; a disabled one can be enabled again."""
    endpoints = webhooks.list_endpoints(session=session)
    pending = webhooks.pending_deliveries(
        session=session, endpoint_ids=[e.id for e in endpoints if e.id is not None]
    )
    return access.render(
        request, "webhooks.html", operator, endpoints=endpoints, pending=pending, enabled=enabled
    )


@router.post("/admin/webhooks/{endpoint_id}/enable")
def enable_webhook(
    endpoint_id: RowId,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
) -> Response:
    """Enable an endpoint (audited): its pending deliveries resume."""
    try:
        console.enable_webhook(
            session=session,
            operator=operator,
            endpoint_id=endpoint_id,
            now=access.now_of(request),
        )
    except NotFound:
        return access.not_found(request, operator)
    return _done("/admin/webhooks", enabled=endpoint_id)


# API keys ----------------------------------------------------------------------------------


def _keys_page(
    request: Request,
    session: Session,
    operator: Operator,
    *,
    status: int = 200,
    error: str | None = None,
    created: tuple[str, str] | None = None,
    revoked: int = 0,
) -> Response:
    return access.render(
        request,
        "keys.html",
        operator,
        status=status,
        keys=list_api_keys(session=session),
        error=error,
        created=created,
        revoked=revoked,
    )


@router.get("/admin/keys")
def api_keys(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    revoked: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    """API keys (never their secrets), a form to create one, a button to revoke each."""
    return _keys_page(request, session, operator, revoked=revoked)


@router.post("/admin/keys")
def create_key(
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    name: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "",
    domain: Annotated[str, Form()] = "",
) -> Response:
    """Create a key (audited); its secret is on this answer only (never stored, no-store)."""
    try:
        wanted = ApiKeyCreate.model_validate(
            {"name": name.strip(), "scope": scope, "domain": domain.strip() or None}
        )
    except ValidationError as exc:
        error = "; ".join(str(e["msg"]) for e in exc.errors())
        return _keys_page(request, session, operator, status=422, error=error)
    key, secret = console.create_key(
        session=session, operator=operator, request=wanted, now=access.now_of(request)
    )
    return _keys_page(request, session, operator, status=201, created=(key.name, secret))


@router.post("/admin/keys/{key_id}/revoke")
def revoke_key(
    key_id: RowId,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
) -> Response:
    """Revoke a key (audited); it stops authenticating at once. Never the operator's own."""
    try:
        console.revoke_key(
            session=session, operator=operator, key_id=key_id, now=access.now_of(request)
        )
    except (Conflict, NotFound) as exc:
        detail, status = exc.detail, exc.status
        raise PageInstead(
            lambda fresh: _keys_page(request, fresh, operator, status=status, error=detail)
        ) from exc
    return _done("/admin/keys", revoked=key_id)


# Feeds -------------------------------------------------------------------------------------


@router.get("/admin/feeds")
def feeds_health(
    request: Request, session: ReadSessionDep, operator: access.OperatorDep, cursor: Cursor = None
) -> Response:
    """Subscribed feeds: state, last fetch and answer, errors in a row."""
    rows = feeds.list_feeds(session=session, state=None, after_id=_after(cursor), limit=PAGE_SIZE)
    return access.render(
        request,
        "feeds.html",
        operator,
        feeds=rows,
        next_page=_next_page(request, [row.id for row in rows]),
    )
