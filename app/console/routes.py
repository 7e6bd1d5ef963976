"""The operators' console: sign in with an admin key, the takedown queue by deadline, one
request in full with its decisions, bulk decisions. Server-rendered, works without
JavaScript; every post carries the CSRF guard's token; every page is `no-store`; anything
under /admin without a session is sent to the sign-in page (303).

Decisions go through the takedowns' services (the same as /v1/admin): one conditional
UPDATE, one audit row and one e-mail per request.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from sqlmodel import Session

from app.console import access, operations, pages, sessions, transparency
from app.console import service as console
from app.console.sessions import KeyCannotSignIn, Operator
from app.cursor import NextPage, moment_part, page_url, parse_moment, seal, unseal
from app.db import ReadSessionDep, WriteSessionDep
from app.errors import Conflict, NotFound
from app.takedowns import appeals, service
from app.takedowns.appeals import SameOperator
from app.takedowns.models import OPEN_STATUSES, Takedown, TakedownAppeal
from app.takedowns.schemas import proof_of
from app.takedowns.service import DECIDABLE_STATUSES, QueueView
from app.web.pages import PageInstead

router = APIRouter(include_in_schema=False)
# The public figures' page (no session needed) and the console's other pages; all before
# the catch-all at the end of this module.
router.include_router(transparency.router)
router.include_router(operations.router)

QUEUE_PATH = "/admin/takedowns"
PAGE_SIZE = 50
MAX_STATEMENT = 4000
_CURSOR_KEY = b"byline-console-queue-v1"
# One operator's decision on the request with this id (approve, or reject with reasons).
Decision = Callable[[str], Takedown]


def _takedown_path(takedown_id: str) -> str:
    return f"{QUEUE_PATH}/{quote(takedown_id, safe='')}"


@router.get("/static/console.css")
def stylesheet() -> Response:
    """The console's stylesheet (beside the rights holders' one), same-origin for the CSP."""
    return Response(
        pages.STYLESHEET,
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


# Signing in and out ------------------------------------------------------------------------


@router.get(access.LOGIN_PATH)
def login_form(request: Request, session: ReadSessionDep) -> Response:
    """The sign-in form: an admin API key."""
    if access.signed_in(request, session) is not None:
        return access.redirect(QUEUE_PATH)
    return access.render(request, "login.html", None, error=None)


@router.post(access.LOGIN_PATH, dependencies=[Depends(access.check_form_token)])
def sign_in(
    request: Request,
    session: WriteSessionDep,
    key: Annotated[str, Form()] = "",
) -> Response:
    """Open a session for an admin key (audited); ingest and publisher keys are refused."""
    try:
        _, token = sessions.sign_in(session=session, key=key.strip(), now=access.now_of(request))
    except KeyCannotSignIn:
        error = "This is not an active admin key. Ingest and publisher keys cannot sign in."
        return access.render(request, "login.html", None, status=401, error=error)
    response = access.redirect(QUEUE_PATH)
    response.set_cookie(
        access.cookie_name(request),
        token,
        max_age=int(sessions.SESSION_LIFETIME.total_seconds()),
        path="/",
        secure=access.secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/admin/logout")
def sign_out(
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
) -> Response:
    """End the session on the server, and forget the cookie."""
    sessions.sign_out(session=session, operator=operator, now=access.now_of(request))
    response = access.redirect(access.LOGIN_PATH)
    response.delete_cookie(
        access.cookie_name(request),
        path="/",
        secure=access.secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/admin")
def console_home(_: access.OperatorDep) -> Response:
    return access.redirect(QUEUE_PATH)


# The queue ---------------------------------------------------------------------------------


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, takedown_id = unseal(_CURSOR_KEY, cursor, 2)
    return parse_moment(micros), takedown_id


@router.get(QUEUE_PATH)
def queue(
    request: Request,
    session: ReadSessionDep,
    operator: access.OperatorDep,
    view: QueueView = QueueView.open,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    decided: Annotated[int, Query(ge=0, le=10_000)] = 0,
    refused: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> Response:
    """The requests of one view, the nearest deadline first, with a countdown each."""
    now = access.now_of(request)
    rows = service.list_queue(
        session=session,
        view=view,
        after=_decode_cursor(cursor) if cursor else None,
        limit=PAGE_SIZE,
        now=now,
    )
    next_page = None
    if len(rows) == PAGE_SIZE:
        last = rows[-1]
        next_cursor = seal(_CURSOR_KEY, moment_part(last.deadline), last.takedown.id)
        next_page = NextPage(next_cursor, page_url(request, next_cursor))
    return access.render(
        request,
        "queue.html",
        operator,
        view=view,
        views=list(QueueView),
        items=[_queue_item(entry.takedown, now, entry.appeal) for entry in rows],
        next_page=next_page,
        decided=decided,
        refused=refused,
    )


def _risk_badges(takedown: Takedown) -> list[str]:
    badges = list(takedown.escalation_reasons or [])
    if takedown.duplicate_of is not None:
        badges.append("repeats an earlier request")
    return badges


def _queue_item(
    takedown: Takedown, now: datetime, pending_appeal: TakedownAppeal | None = None
) -> dict[str, object]:
    """A request as the queue shows it; while an appeal awaits a decision, its deadline is
    the one counted down."""
    if pending_appeal is not None:
        countdown = pages.countdown(pending_appeal.due_at, now)
    elif takedown.status in OPEN_STATUSES:
        countdown = pages.countdown(takedown.due_at, now)
    else:
        countdown = None
    return {
        "takedown": takedown,
        "appeal": pending_appeal,
        "countdown": countdown,
        "proof": proof_of(takedown),
        "risks": _risk_badges(takedown),
        "decidable": _decidable(takedown),
    }


def _decidable(takedown: Takedown) -> bool:
    return takedown.status in DECIDABLE_STATUSES and takedown.decision is None


@router.post(f"{QUEUE_PATH}/bulk")
def decide_in_bulk(
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    action: Annotated[str, Form()] = "",
    ids: Annotated[list[str] | None, Form()] = None,
    template: Annotated[str, Form()] = "",
    statement: Annotated[str, Form(max_length=MAX_STATEMENT)] = "",
) -> Response:
    """Approve or reject the ticked requests: each its own decision, audit row and e-mail."""
    now = access.now_of(request)
    reason = console.statement_of_reasons(template, statement)
    if action == "approve":
        decide = _approver(session, operator, now)
    elif action == "reject" and reason:
        decide = _rejecter(session, operator, now, reason)
    else:
        return access.redirect(f"{QUEUE_PATH}?{urlencode({'refused': len(ids or [])})}")
    outcome = console.decide_many(session=session, takedown_ids=ids or [], decide=decide)
    query = urlencode({"decided": len(outcome.decided), "refused": len(outcome.refused)})
    return access.redirect(f"{QUEUE_PATH}?{query}")


def _approver(session: Session, operator: Operator, now: datetime) -> Decision:
    def approve(takedown_id: str) -> Takedown:
        return service.approve_takedown(
            session=session, takedown_id=takedown_id, actor=operator.name, now=now
        )

    return approve


def _rejecter(session: Session, operator: Operator, now: datetime, reason: str) -> Decision:
    def reject(takedown_id: str) -> Takedown:
        return service.reject_takedown(
            session=session, takedown_id=takedown_id, actor=operator.name, reason=reason, now=now
        )

    return reject


# One request -------------------------------------------------------------------------------


def _detail_page(
    request: Request,
    session: Session,
    operator: Operator,
    takedown: Takedown,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    now = access.now_of(request)
    appeal = appeals.appeal_of(session=session, takedown_id=takedown.id)
    pending = appeal if appeal is not None and appeal.decided_at is None else None
    return access.render(
        request,
        "takedown.html",
        operator,
        status=status,
        takedown=takedown,
        item=_queue_item(takedown, now, pending),
        appeal=appeal,
        may_decide_appeal=pending is not None and pending.rejected_by != operator.name,
        targets=console.targets_with_copies(session=session, takedown=takedown),
        history=console.history(session=session, takedown_id=takedown.id),
        error=error,
        max_statement=MAX_STATEMENT,
    )


@router.get(f"{QUEUE_PATH}/{{takedown_id}}")
def takedown_detail(
    takedown_id: str, request: Request, session: ReadSessionDep, operator: access.OperatorDep
) -> Response:
    """One request in full: claimant, proof, targets beside our copies, history, actions."""
    try:
        takedown = service.get_takedown(session=session, takedown_id=takedown_id)
    except NotFound:
        return access.not_found(request, operator)
    return _detail_page(request, session, operator, takedown)


def _after_decision(session: Session, takedown_id: str, then: str) -> Response:
    if then == "next":
        following = service.next_to_decide(session=session, excluding=takedown_id)
        return access.redirect(_takedown_path(following.id) if following else QUEUE_PATH)
    return access.redirect(_takedown_path(takedown_id))


def _refused_decision(
    request: Request,
    operator: Operator,
    takedown_id: str,
    error: str,
    status: int = 409,
) -> PageInstead:
    """What a refused decision raises: its writes rolled back, the request's page again."""

    def render(fresh: Session) -> Response:
        try:
            takedown = service.get_takedown(session=fresh, takedown_id=takedown_id)
        except NotFound:
            return access.not_found(request, operator)
        return _detail_page(request, fresh, operator, takedown, error=error, status=status)

    return PageInstead(render)


@router.post(f"{QUEUE_PATH}/{{takedown_id}}/approve")
def approve(
    takedown_id: str,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    then: Annotated[str, Form()] = "",
) -> Response:
    """Approve: the request's removals run now and its blocks hold."""
    try:
        _approver(session, operator, access.now_of(request))(takedown_id)
    except (Conflict, NotFound) as exc:
        raise _refused_decision(request, operator, takedown_id, exc.detail) from exc
    return _after_decision(session, takedown_id, then)


@router.post(f"{QUEUE_PATH}/{{takedown_id}}/reject")
def reject(
    takedown_id: str,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    template: Annotated[str, Form()] = "",
    statement: Annotated[str, Form(max_length=MAX_STATEMENT)] = "",
    then: Annotated[str, Form()] = "",
) -> Response:
    """Reject with a statement of reasons (a template and the particulars), e-mailed to the
    claimant."""
    reason = console.statement_of_reasons(template, statement)
    if not reason:
        error = "A rejection needs a statement of reasons: pick a template or write one."
        raise _refused_decision(request, operator, takedown_id, error)
    try:
        _rejecter(session, operator, access.now_of(request), reason)(takedown_id)
    except (Conflict, NotFound) as exc:
        raise _refused_decision(request, operator, takedown_id, exc.detail) from exc
    return _after_decision(session, takedown_id, then)


@router.post(f"{QUEUE_PATH}/{{takedown_id}}/escalate")
def escalate(
    takedown_id: str,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    statement: Annotated[str, Form(max_length=MAX_STATEMENT)] = "",
    then: Annotated[str, Form()] = "",
) -> Response:
    """Hold the request for review: nothing is removed until an operator approves it."""
    try:
        service.escalate_takedown(
            session=session,
            takedown_id=takedown_id,
            actor=operator.name,
            reason=statement.strip() or None,
            now=access.now_of(request),
        )
    except (Conflict, NotFound) as exc:
        raise _refused_decision(request, operator, takedown_id, exc.detail) from exc
    return _after_decision(session, takedown_id, then)


@router.post(f"{QUEUE_PATH}/{{takedown_id}}/appeal/uphold")
def uphold_rejection(
    takedown_id: str,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    template: Annotated[str, Form()] = "",
    statement: Annotated[str, Form(max_length=MAX_STATEMENT)] = "",
) -> Response:
    """Decide an appeal: the rejection stands, with a statement of reasons e-mailed to the
    claimant. Not by the operator who rejected the request."""
    reason = console.statement_of_reasons(template, statement)
    if not reason:
        error = "Upholding a rejection needs a statement of reasons: pick a template or write one."
        raise _refused_decision(request, operator, takedown_id, error)
    try:
        appeals.uphold_rejection(
            session=session,
            takedown_id=takedown_id,
            actor=operator.name,
            reason=reason,
            now=access.now_of(request),
        )
    except (Conflict, NotFound, SameOperator) as exc:
        raise _refused_decision(request, operator, takedown_id, exc.detail, exc.status) from exc
    return access.redirect(_takedown_path(takedown_id))


@router.post(f"{QUEUE_PATH}/{{takedown_id}}/appeal/grant")
def grant_appeal(
    takedown_id: str,
    request: Request,
    session: WriteSessionDep,
    operator: access.PostingOperatorDep,
    statement: Annotated[str, Form(max_length=MAX_STATEMENT)] = "",
) -> Response:
    """Decide an appeal: the request is approved after all, its removals run now. Not by the
    operator who rejected the request."""
    try:
        appeals.grant_appeal(
            session=session,
            takedown_id=takedown_id,
            actor=operator.name,
            reason=statement.strip() or None,
            now=access.now_of(request),
        )
    except (Conflict, NotFound, SameOperator) as exc:
        raise _refused_decision(request, operator, takedown_id, exc.detail, exc.status) from exc
    return access.redirect(_takedown_path(takedown_id))


# Everything else under /admin: the sign-in page first, then "not found".


@router.api_route("/admin/{rest:path}", methods=["GET", "POST"])
def elsewhere_in_console(request: Request, operator: access.OperatorDep) -> Response:
    return access.not_found(request, operator)
