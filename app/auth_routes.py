"""Operators manage API keys over HTTP as well as with `byline keys`."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, Field, model_validator

from app.articles.urls import registrable_domain
from app.auth import (
    AdminKey,
    ApiKey,
    Scope,
    create_api_key_audited,
    list_api_keys,
    revoke_api_key_audited,
)
from app.clock import RequestNow
from app.db import MAX_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.takedowns.schemas import Domain

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], responses=problem_responses(401, 403))


class ApiKeyCreate(BaseModel):
    # No control characters (a NUL was a 500 on PostgreSQL, found by fuzzing).
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    scope: Scope
    domain: Domain | None = Field(
        default=None,
        description="For scope `publisher` only, and required there: the domain the key "
        "speaks for (its registrable domain is kept). Publishers usually earn their key by "
        "proving the domain in DNS (`POST /v1/publishers/verifications`).",
    )

    @model_validator(mode="after")
    def _domain_for_publishers_only(self) -> "ApiKeyCreate":
        if (self.scope == Scope.publisher) != (self.domain is not None):
            raise ValueError("domain is required for scope publisher, and only for it")
        if self.domain is not None:
            self.domain = registrable_domain(self.domain)
        return self


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    scope: Scope
    domain: str | None
    key_hint: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> "ApiKeyPublic":
        assert key.id is not None
        return cls(
            id=key.id,
            name=key.name,
            scope=Scope(key.scope),
            domain=key.domain,
            key_hint=key.key_hint,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(description="Shown once; only its hash is stored.")


class ApiKeysPublic(BaseModel):
    items: list[ApiKeyPublic]


@router.get("", response_model=ApiKeysPublic)
def list_keys(session: ReadSessionDep, _: AdminKey) -> ApiKeysPublic:
    """List API keys (never their secrets)."""
    return ApiKeysPublic(items=[ApiKeyPublic.of(key) for key in list_api_keys(session=session)])


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(422),
)
def create_key(
    body: ApiKeyCreate,
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> ApiKeyCreated:
    """Create a key (audited); the secret is in this answer only."""
    key, secret = create_api_key_audited(
        session=session,
        name=body.name,
        scope=body.scope,
        domain=body.domain,
        actor=principal.name,
        now=now,
    )
    return ApiKeyCreated(**ApiKeyPublic.of(key).model_dump(), secret=secret)


@router.delete("/{key_id}", response_model=ApiKeyPublic, responses=problem_responses(404))
def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
) -> ApiKeyPublic:
    """Revoke a key (audited); it stops authenticating at once."""
    key = revoke_api_key_audited(session=session, key_id=key_id, actor=principal.name, now=now)
    return ApiKeyPublic.of(key)
