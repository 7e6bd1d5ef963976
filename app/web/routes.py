"""The rights holders' pages: the takedown form, the confirmation page behind the e-mailed
link and the status page. They work without JavaScript and go through the same service
functions as `/v1/takedowns`: one set of rules, one rate limit. This module only turns form
posts into service calls and results into pages.
"""

from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session

from app.clock import RequestNow, request_now
from app.config import Settings
from app.db import ReadSessionDep, WriteSessionDep
from app.errors import InvalidInput, NotFound, ProblemError
from app.takedowns import appeals, service
from app.takedowns import filing as filings
from app.takedowns.models import OPEN_STATUSES, TakedownStatus
from app.takedowns.ratelimit import client_address
from app.takedowns.schemas import MAX_TARGETS, AppealIn, TakedownPublic
from app.web import pages
from app.web.csrf import CsrfGuard
from app.web.forms import (
    FormErrors,
    TakedownFormFields,
    errors_from_problem,
    errors_from_validation,
)
from app.web.pages import PageInstead

router = APIRouter(include_in_schema=False)

# The one header of a refused filing that the page passes on.
_PASSED_ON_HEADERS = ("Retry-After",)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _guard(request: Request) -> CsrfGuard:
    return CsrfGuard.from_settings(_settings(request))


def _status_path(takedown_id: str, token: str) -> str:
    return f"/takedown/{quote(takedown_id, safe='')}?token={quote(token, safe='')}"


def _confirm_path(takedown_id: str, code: str) -> str:
    return f"/takedown/{quote(takedown_id, safe='')}/confirm?code={quote(code, safe='')}"


def _form_page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = _guard(request).issue(request)
    context = {
        "values": values or TakedownFormFields().shown_again(),
        "errors": errors or FormErrors(),
        "csrf_token": token.value,
        "reasons": [(reason.value, words) for reason, words in pages.REASONS.items()],
        "statements": pages.STATEMENTS,
        "review_window": pages.duration_words(_settings(request).takedown_review_window),
        "max_targets": MAX_TARGETS,
        "max_auto_targets": _settings(request).takedown_max_auto_targets,
    }
    return pages.page("form.html", context, status=status, form_token=token, headers=headers)


def _not_found() -> Response:
    return pages.page("not_found.html", {}, status=404)


def _forbidden(back: str) -> Response:
    return pages.page("forbidden.html", {"back": back}, status=403)


@router.get("/static/takedown.css")
def stylesheet() -> Response:
    """The pages' only stylesheet, same-origin so the CSP can forbid everything else."""
    return Response(
        pages.STYLESHEET,
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/takedown")
def takedown_form(request: Request) -> Response:
    """The takedown form and our removal policy."""
    return _form_page(request)


@router.post("/takedown")
def file_takedown_form(
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    form: Annotated[TakedownFormFields, Form()],
) -> Response:
    """File a takedown from the form; errors re-show the form with the input kept."""
    if not _guard(request).accepts(request, form.csrf_token):
        return _forbidden("/takedown")
    values = form.shown_again()
    try:
        filing = form.filing()
    except ValidationError as exc:
        return _form_page(
            request, values=values, errors=errors_from_validation(exc, form), status=422
        )
    settings = _settings(request)
    try:
        filed = filings.file_takedown(
            session=session,
            filing=filing,
            client_address=client_address(request),
            settings=settings,
            now=now,
        )
    except ProblemError as exc:
        # Nothing of a refused filing is kept, exactly as when the JSON endpoint's error
        # unwinds its session.
        if isinstance(exc, InvalidInput):
            errors = errors_from_problem(exc.errors or [], form)
        else:
            errors = FormErrors(general=[exc.detail])
        headers = {name: exc.headers[name] for name in _PASSED_ON_HEADERS if name in exc.headers}
        status = exc.status
        raise PageInstead(
            lambda _: _form_page(
                request, values=values, errors=errors, status=status, headers=headers
            )
        ) from exc
    takedown = TakedownPublic.of(filed.takedown, filed.targets)
    context = {
        "takedown": takedown,
        "token": filed.token,
        "status_url": settings.public_base_url + _status_path(takedown.id, filed.token),
        "review_window": pages.duration_words(settings.takedown_review_window),
    }
    return pages.page("receipt.html", context, status=202)


def _status_page(
    request: Request,
    session: Session,
    *,
    takedown_id: str,
    token: str,
    problem: str | None = None,
    appeal_errors: list[str] | None = None,
    statement: str = "",
    status: int = 200,
) -> Response:
    takedown = service.get_for_claimant(session=session, takedown_id=takedown_id, token=token)
    appeal = appeals.appeal_of(session=session, takedown_id=takedown.id)
    view = TakedownPublic.of(
        takedown, service.takedown_targets(session=session, takedown=takedown), appeal
    )
    form_token = _guard(request).issue(request)
    context = {
        "takedown": view,
        "token": token,
        "csrf_token": form_token.value,
        # Withdrawal is possible until the first removal moves the request to executing;
        # the service has the last word (409) if that happened since this page was shown.
        "can_withdraw": view.status in OPEN_STATUSES and view.status != TakedownStatus.executing,
        "can_appeal": appeals.may_appeal(takedown, appeal, request_now(request)),
        "appeal_closes_at": appeals.appeal_closes_at(takedown),
        "appeal_review": pages.duration_words(
            timedelta(days=_settings(request).appeal_review_days)
        ),
        # The form's own fields and errors (the macros of _macros.html read these names).
        "values": {"statement": statement},
        "errors": FormErrors(by_field={"statement": appeal_errors} if appeal_errors else {}),
        "problem": problem,
    }
    return pages.page("status.html", context, status=status, form_token=form_token)


@router.get("/takedown/{takedown_id}")
def takedown_status(
    takedown_id: str, request: Request, session: ReadSessionDep, token: str = ""
) -> Response:
    """Where a request stands, for the holder of its status link."""
    try:
        return _status_page(request, session, takedown_id=takedown_id, token=token)
    except NotFound:
        return _not_found()


def _status_page_instead(
    request: Request, takedown_id: str, token: str, refused: ProblemError
) -> PageInstead:
    """What a refused action of the status page raises: its writes rolled back, the page
    again with why (or the not-found page)."""
    if isinstance(refused, NotFound):
        return PageInstead(lambda _: _not_found())
    problem, status = refused.detail, refused.status
    return PageInstead(
        lambda fresh: _status_page(
            request, fresh, takedown_id=takedown_id, token=token, problem=problem, status=status
        )
    )


@router.post("/takedown/{takedown_id}/withdraw")
def withdraw_takedown_form(
    takedown_id: str,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    csrf_token: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
) -> Response:
    """Withdraw a request from its status page, then show the page again."""
    if not _guard(request).accepts(request, csrf_token):
        return _forbidden(_status_path(takedown_id, token))
    try:
        service.withdraw_takedown(session=session, takedown_id=takedown_id, token=token, now=now)
    except ProblemError as exc:
        raise _status_page_instead(request, takedown_id, token, exc) from exc
    # See other: reloading the status page must not post the withdrawal again.
    return RedirectResponse(
        _status_path(takedown_id, token), status_code=303, headers=pages.PAGE_HEADERS
    )


@router.post("/takedown/{takedown_id}/appeal")
def appeal_takedown_form(
    takedown_id: str,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    csrf_token: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    statement: Annotated[str, Form()] = "",
) -> Response:
    """Appeal a rejection from the status page, then show the page again."""
    if not _guard(request).accepts(request, csrf_token):
        return _forbidden(_status_path(takedown_id, token))
    try:
        appeal = AppealIn(statement=statement)
    except ValidationError as exc:
        messages = [str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()]
        messages = [message[:1].upper() + message[1:] for message in messages]
        try:
            return _status_page(
                request,
                session,
                takedown_id=takedown_id,
                token=token,
                problem="Your appeal was not sent: " + " ".join(messages),
                appeal_errors=messages,
                statement=statement,
                status=422,
            )
        except NotFound:
            return _not_found()
    try:
        appeals.file_appeal(
            session=session,
            takedown_id=takedown_id,
            token=token,
            statement=appeal.statement,
            settings=_settings(request),
            now=now,
        )
    except ProblemError as exc:
        raise _status_page_instead(request, takedown_id, token, exc) from exc
    # See other: reloading the status page must not post the appeal again.
    return RedirectResponse(
        _status_path(takedown_id, token), status_code=303, headers=pages.PAGE_HEADERS
    )


def _confirm_page(
    request: Request,
    session: Session,
    *,
    takedown_id: str,
    code: str,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    """The page behind the e-mailed link: the request and one button while the address is
    unconfirmed, what happens next once it is. Showing it changes nothing."""
    now = request_now(request)
    try:
        takedown = filings.check_confirmation_code(
            session=session, takedown_id=takedown_id, code=code, now=now
        )
        confirmed = ended = False
    except NotFound:
        return pages.page("confirm_invalid.html", {}, status=404)
    except ProblemError as exc:
        if exc.status == 410:
            return pages.page("confirm_expired.html", {}, status=410)
        # Used already, or the request has ended: show where it stands. An ended request
        # whose address nobody confirmed must not be shown as confirmed.
        takedown = service.get_takedown(session=session, takedown_id=takedown_id)
        confirmed = takedown.email_confirmed_at is not None
        ended = not confirmed
    view = TakedownPublic.of(takedown, service.takedown_targets(session=session, takedown=takedown))
    form_token = _guard(request).issue(request)
    context = {
        "takedown": view,
        "code": code,
        "confirmed": confirmed,
        "ended": ended,
        "runs_now": view.run_at is not None and view.run_at <= now,
        "csrf_token": form_token.value,
        "problem": problem,
    }
    return pages.page("confirm.html", context, status=status, form_token=form_token)


@router.get("/takedown/{takedown_id}/confirm")
def takedown_confirm_page(
    takedown_id: str, request: Request, session: ReadSessionDep, code: str = ""
) -> Response:
    """The confirmation page: one button. Mail scanners open links; only the button's post
    confirms."""
    return _confirm_page(request, session, takedown_id=takedown_id, code=code)


@router.post("/takedown/{takedown_id}/confirm")
def confirm_takedown_form(
    takedown_id: str,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    csrf_token: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
) -> Response:
    """Confirm the address from the confirmation page, then show the page again."""
    if not _guard(request).accepts(request, csrf_token):
        return _forbidden(_confirm_path(takedown_id, code))
    try:
        filings.confirm_takedown(
            session=session,
            takedown_id=takedown_id,
            code=code,
            settings=_settings(request),
            now=now,
        )
    except ProblemError as exc:
        if exc.status in (404, 409, 410):
            raise PageInstead(
                lambda fresh: _confirm_page(request, fresh, takedown_id=takedown_id, code=code)
            ) from exc
        headers = {name: exc.headers[name] for name in _PASSED_ON_HEADERS if name in exc.headers}
        problem, status = exc.detail, exc.status

        def refused(fresh: Session) -> Response:
            response = _confirm_page(
                request, fresh, takedown_id=takedown_id, code=code, problem=problem, status=status
            )
            response.headers.update(headers)
            return response

        raise PageInstead(refused) from exc
    # See other: reloading the page must not post the confirmation again.
    return RedirectResponse(
        _confirm_path(takedown_id, code), status_code=303, headers=pages.PAGE_HEADERS
    )
