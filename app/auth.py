"""API keys: stored hashed, each with one scope; a FastAPI dependency per scope."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import String, select
from sqlmodel import Field, Session, SQLModel

from app.db import UTCDateTime, new_session
from app.errors import NotFound, ProblemError

KEY_PREFIX = "byl_"


class Scope(StrEnum):
    ingest = "ingest"
    admin = "admin"


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(100))
    scope: str = Field(sa_type=String(20))
    # SHA-256 suffices: keys are 256-bit random secrets, not passwords.
    key_hash: str = Field(sa_type=String(64), unique=True)
    key_hint: str = Field(sa_type=String(12))
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    *, session: Session, name: str, scope: Scope, now: datetime
) -> tuple[ApiKey, str]:
    """Create a key; the secret is returned once and only its hash is stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        scope=scope.value,
        key_hash=hash_secret(secret),
        key_hint=secret[:10],
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key, secret


def list_api_keys(*, session: Session) -> list[ApiKey]:
    """All keys, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))  # type: ignore[arg-type]


def revoke_api_key(*, session: Session, key_id: int, now: datetime) -> ApiKey:
    """Revoke a key; it stops authenticating at once."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key with id {key_id}.")
    if key.revoked_at is None:
        key.revoked_at = now
    return key


@dataclass(frozen=True)
class Principal:
    """Who called: the key's id, name (used as the audit actor) and scope."""

    key_id: int
    name: str
    scope: Scope


def find_active_key(*, session: Session, secret: str) -> Principal | None:
    """The unrevoked key with this secret, if any."""
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.scope).where(  # type: ignore[call-overload]
            ApiKey.key_hash == hash_secret(secret),
            ApiKey.revoked_at.is_(None),  # type: ignore[union-attr]
        )
    ).first()
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, scope=Scope(row.scope))


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer byl_...`")


def _unauthorized(detail: str, error: str | None = None) -> ProblemError:
    challenge = 'Bearer realm="byline"' + (f', error="{error}"' if error else "")
    return ProblemError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def _require(scope: Scope):  # type: ignore[no-untyped-def]
    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized("An API key is required: Authorization: Bearer <key>.")
        with new_session(request.app.state.engine) as session:
            principal = find_active_key(session=session, secret=credentials.credentials)
        if principal is None:
            raise _unauthorized("The API key is unknown or revoked.", "invalid_token")
        # admin keys may do everything an ingest key may.
        if principal.scope != scope and principal.scope != Scope.admin:
            raise ProblemError(403, "forbidden", f"This operation needs a key with scope {scope}.")
        return principal

    return dependency


IngestKey = Annotated[Principal, Depends(_require(Scope.ingest))]
AdminKey = Annotated[Principal, Depends(_require(Scope.admin))]
