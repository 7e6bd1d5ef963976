"""Routes for publishers: prove a domain by DNS, and list its articles with the publisher
key that proof earns. Thin: the rules live in service.py."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.articles.cursor import BadCursor, decode_cursor
from app.articles.routes import article_page, next_page
from app.articles.schemas import ArticlesPublic
from app.articles.service import ArticleFilters
from app.auth import PublisherKey
from app.clock import RequestNow
from app.db import ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.publishers import service
from app.publishers.dns import txt_lookup
from app.publishers.schemas import VerificationChecked, VerificationIn, VerificationPublic
from app.takedowns.ratelimit import client_address

router = APIRouter(tags=["publishers"])

VerificationId = Annotated[str, Path(max_length=36)]
# Every answer about a verification is for the holder of its id alone, and the check's may
# hold a publisher key.
NO_STORE = "no-store"


@router.post(
    "/v1/publishers/verifications",
    response_model=VerificationPublic,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(429),
)
def start_verification(
    body: VerificationIn,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
) -> VerificationPublic:
    """Start proving a domain: publish the TXT record of this answer, then ask for a check."""
    verification = service.start_verification(
        session=session,
        domain=body.domain,
        email=body.email,
        client_address=client_address(request),
        settings=request.app.state.settings,
        now=now,
    )
    response.headers["Cache-Control"] = NO_STORE
    response.headers["Location"] = (
        f"{request.app.state.settings.public_base_url}/v1/publishers/verifications/"
        f"{verification.id}"
    )
    return VerificationPublic.of(verification, now)


@router.get(
    "/v1/publishers/verifications/{verification_id}",
    response_model=VerificationPublic,
    responses=problem_responses(404),
)
def get_verification(
    verification_id: VerificationId,
    request: Request,
    now: RequestNow,
    response: Response,
    session: ReadSessionDep,
) -> VerificationPublic:
    """Where a domain verification stands."""
    verification = service.get_verification(session=session, verification_id=verification_id)
    response.headers["Cache-Control"] = NO_STORE
    return VerificationPublic.of(verification, now)


@router.post(
    "/v1/publishers/verifications/{verification_id}/check",
    response_model=VerificationChecked,
    responses=problem_responses(404, 429),
)
def check_verification(
    verification_id: VerificationId, request: Request, now: RequestNow, response: Response
) -> VerificationChecked:
    """Look the TXT record up now. The answer that verifies the domain holds its publisher
    key, this once; before, the status stays `pending` and `last_check_error` says why. An
    unverified verification past `expires_at` answers `expired`: start a new one."""
    settings = request.app.state.settings
    # No session dependency: the service writes before and after the DNS lookup in
    # transactions of its own, so that none is open while DNS answers.
    checked = service.check_verification(
        engine=request.app.state.engine,
        verification_id=verification_id,
        settings=settings,
        now=now,
        lookup=txt_lookup(settings),
    )
    response.headers["Cache-Control"] = NO_STORE
    return VerificationChecked(
        **VerificationPublic.of(checked.verification, now).model_dump(),
        publisher_key=checked.publisher_key,
    )


@router.get(
    "/v1/publisher/articles",
    response_model=ArticlesPublic,
    responses=problem_responses(400, 401, 403),
)
def list_publisher_articles(
    request: Request,
    response: Response,
    publisher: PublisherKey,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ArticlesPublic:
    """Our live articles from the key's domain and its subdomains, newest first,
    keyset-paged with `cursor`: what a publisher may pick from to file a takedown."""
    position = decode_cursor(cursor) if cursor else None
    if position is not None and (position.rank is not None or position.window_start is not None):
        raise BadCursor()  # a search's cursor
    assert publisher.domain is not None  # every publisher key is bound to one
    filters = ArticleFilters(within_domain=publisher.domain)
    items, last = article_page(
        request.app.state.engine,
        request.app.state.settings.public_base_url,
        None,
        filters,
        position,
        limit,
    )
    next_cursor = next_page(request, response, last=last, count=len(items), limit=limit)
    response.headers["Cache-Control"] = NO_STORE
    return ArticlesPublic(items=items, next_cursor=next_cursor)
