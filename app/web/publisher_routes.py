"""The publishers' pages: prove a domain with a DNS record and get the publisher key, as
`/v1/publishers/verifications` does, without JavaScript. Same service functions, same rate
limits; this module only turns form posts into service calls and results into pages."""

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from app.clock import RequestNow, request_now
from app.config import Settings
from app.db import ReadSessionDep, WriteSessionDep
from app.errors import NotFound, ProblemError
from app.publishers import service
from app.publishers.dns import txt_lookup
from app.publishers.schemas import VerificationIn, VerificationPublic
from app.takedowns.ratelimit import client_address
from app.web import pages
from app.web.csrf import CsrfGuard
from app.web.forms import FormErrors
from app.web.pages import PageInstead

router = APIRouter(include_in_schema=False)

LABELS = {"domain": "Your domain", "email": "Your e-mail address"}
_MISSING = {"domain": "Enter your domain.", "email": "Enter your e-mail address."}
_PASSED_ON_HEADERS = ("Retry-After",)


class VerificationFormFields(BaseModel):
    """The form as posted: absent fields empty, so that what was typed can be shown again."""

    csrf_token: str = ""
    domain: str = ""
    email: str = ""


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _guard(request: Request) -> CsrfGuard:
    return CsrfGuard.from_settings(_settings(request))


def _grace(request: Request) -> str:
    return pages.duration_words(_settings(request).publisher_record_grace)


def _page_path(verification_id: str) -> str:
    return f"/publishers/verify/{quote(verification_id, safe='')}"


def _passed_on(exc: ProblemError) -> dict[str, str]:
    return {name: exc.headers[name] for name in _PASSED_ON_HEADERS if name in exc.headers}


def _errors(exc: ValidationError) -> FormErrors:
    errors = FormErrors()
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else None
        if name not in LABELS:
            errors.add(None, str(error["msg"]))
        elif not error["input"]:
            errors.add(name, _MISSING[name])
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            errors.add(name, message[:1].upper() + message[1:])
    return errors


def _form_page(
    request: Request,
    *,
    values: dict[str, str] | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = _guard(request).issue(request)
    errors = errors or FormErrors()
    summary = [
        (name, f"{label}: {message}")
        for name, label in LABELS.items()
        for message in errors.by_field.get(name, [])
    ] + [(None, message) for message in errors.general]
    context = {
        "values": values or {"domain": "", "email": ""},
        "errors": errors,
        "summary": summary,
        "csrf_token": token.value,
        "grace": _grace(request),
    }
    return pages.page(
        "publisher_verify.html", context, status=status, form_token=token, headers=headers
    )


def _verification_page(
    request: Request,
    verification: VerificationPublic,
    *,
    publisher_key: str | None = None,
    problem: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    token = _guard(request).issue(request)
    context = {
        "verification": verification,
        "publisher_key": publisher_key,
        "lookup_failed": (verification.last_check_error or "").startswith("lookup failed"),
        "problem": problem,
        "csrf_token": token.value,
        "grace": _grace(request),
    }
    return pages.page(
        "publisher_verification.html", context, status=status, form_token=token, headers=headers
    )


def _not_found() -> Response:
    return pages.page("publisher_not_found.html", {}, status=404)


def _forbidden(back: str) -> Response:
    return pages.page("forbidden.html", {"back": back}, status=403)


@router.get("/publishers/verify")
def verify_form(request: Request) -> Response:
    """The form that starts a domain verification, and what the proof gets."""
    return _form_page(request)


@router.post("/publishers/verify")
def start_verification_form(
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    form: Annotated[VerificationFormFields, Form()],
) -> Response:
    """Start a verification from the form, then show its record (303 to its page)."""
    if not _guard(request).accepts(request, form.csrf_token):
        return _forbidden("/publishers/verify")
    values = {"domain": form.domain, "email": form.email}
    try:
        body = VerificationIn(domain=form.domain.strip(), email=form.email.strip())
    except ValidationError as exc:
        return _form_page(request, values=values, errors=_errors(exc), status=422)
    try:
        verification = service.start_verification(
            session=session,
            domain=body.domain,
            email=body.email,
            client_address=client_address(request),
            settings=_settings(request),
            now=now,
        )
    except ProblemError as exc:
        # Nothing of the refused attempt is kept (its count neither).
        errors = FormErrors(general=[exc.detail])
        status, headers = exc.status, _passed_on(exc)
        raise PageInstead(
            lambda _: _form_page(
                request, values=values, errors=errors, status=status, headers=headers
            )
        ) from exc
    # See other: reloading the record's page must not start another verification.
    return RedirectResponse(
        _page_path(verification.id), status_code=303, headers=pages.PAGE_HEADERS
    )


def _shown(request: Request, session: Session, verification_id: str) -> VerificationPublic:
    verification = service.get_verification(session=session, verification_id=verification_id)
    return VerificationPublic.of(verification, request_now(request))


@router.get("/publishers/verify/{verification_id}")
def verification_page(verification_id: str, request: Request, session: ReadSessionDep) -> Response:
    """The record to add, and the button that checks it."""
    try:
        return _verification_page(request, _shown(request, session, verification_id))
    except NotFound:
        return _not_found()


@router.post("/publishers/verify/{verification_id}/check")
def check_verification_form(
    verification_id: str,
    request: Request,
    now: RequestNow,
    session: ReadSessionDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Check the record now: the page with the publisher key (shown this once) when it is
    seen, otherwise back to the record's page, which says what the check found."""
    if not _guard(request).accepts(request, csrf_token):
        return _forbidden(_page_path(verification_id))
    settings = _settings(request)
    try:
        checked = service.check_verification(
            engine=request.app.state.engine,
            verification_id=verification_id,
            settings=settings,
            now=now,
            lookup=txt_lookup(settings),
        )
    except NotFound:
        return _not_found()
    except ProblemError as exc:
        return _verification_page(
            request,
            _shown(request, session, verification_id),
            problem=exc.detail,
            status=exc.status,
            headers=_passed_on(exc),
        )
    if checked.publisher_key is not None:
        # Answered here and never redirected: the key must not be in any page one can reload.
        return _verification_page(
            request,
            VerificationPublic.of(checked.verification, now),
            publisher_key=checked.publisher_key,
        )
    return RedirectResponse(
        _page_path(verification_id), status_code=303, headers=pages.PAGE_HEADERS
    )
