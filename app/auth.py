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
from app.takedowns import audit
from app.takedowns.audit import Action

KEY_PREFIX = "byl_"


class Scope(StrEnum):
    ingest = "ingest"
    admin = "admin"
    # Bound to one registrable domain (ApiKey.domain), proven by DNS: files takedowns of it.
    publisher = "publisher"


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(100))
    scope: str = Field(sa_type=String(20))
    # The registrable domain a publisher key speaks for; None for other scopes.
    domain: str | None = Field(default=None, sa_type=String(255))
    # SHA-256 suffices: keys are 256-bit random secrets, not passwords.
    key_hash: str = Field(sa_type=String(64), unique=True)
    key_hint: str = Field(sa_type=String(12))
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    *, session: Session, name: str, scope: Scope, now: datetime, domain: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; the secret is returned once and only its hash is stored. A publisher
    key needs the registrable domain it is bound to; other keys take none."""
    if (scope == Scope.publisher) != (domain is not None):
        raise ValueError("a publisher key needs a domain, and only a publisher key takes one")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        scope=scope.value,
        domain=domain,
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
    """Who called: the key's id, name (used as the audit actor), scope, and for a publisher
    key the registrable domain it speaks for."""

    key_id: int
    name: str
    scope: Scope
    domain: str | None = None


def find_active_key(*, session: Session, secret: str) -> Principal | None:
    """The unrevoked key with this secret, if any."""
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.scope, ApiKey.domain).where(  # type: ignore[call-overload]
            ApiKey.key_hash == hash_secret(secret),
            ApiKey.revoked_at.is_(None),  # type: ignore[union-attr]
        )
    ).first()
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, scope=Scope(row.scope), domain=row.domain)


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer byl_...`")


def _unauthorized(detail: str, error: str | None = None) -> ProblemError:
    challenge = 'Bearer realm="byline"' + (f', error="{error}"' if error else "")
    return ProblemError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def _allows(principal: Principal, scope: Scope) -> bool:
    # admin keys may do everything an ingest key may; a publisher key only its own things.
    return principal.scope == scope or (principal.scope == Scope.admin and scope == Scope.ingest)


def _principal(request: Request, secret: str, scope: Scope) -> Principal:
    with new_session(request.app.state.engine) as session:
        principal = find_active_key(session=session, secret=secret)
    if principal is None:
        raise _unauthorized("The API key is unknown or revoked.", "invalid_token")
    if not _allows(principal, scope):
        raise ProblemError(403, "forbidden", f"This operation needs a key with scope {scope}.")
    return principal


def _require(scope: Scope):  # type: ignore[no-untyped-def]
    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized("An API key is required: Authorization: Bearer <key>.")
        return _principal(request, credentials.credentials, scope)

    return dependency


def _optional_publisher(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """The publisher key a request carries, if it carries a key at all (then it must be an
    active publisher key: 401 or 403 otherwise)."""
    if credentials is None:
        return None
    return _principal(request, credentials.credentials, Scope.publisher)


IngestKey = Annotated[Principal, Depends(_require(Scope.ingest))]
AdminKey = Annotated[Principal, Depends(_require(Scope.admin))]
PublisherKey = Annotated[Principal, Depends(_require(Scope.publisher))]
OptionalPublisherKey = Annotated[Principal | None, Depends(_optional_publisher)]


def create_api_key_audited(
    *, session: Session, name: str, scope: Scope, domain: str | None, actor: str, now: datetime
) -> tuple[ApiKey, str]:
    """`create_api_key` with its audit row under the acting key's name (never the secret)."""
    key, secret = create_api_key(session=session, name=name, scope=scope, domain=domain, now=now)
    reason = f"key {key.id} {key.name!r}, scope {key.scope}" + (
        f", domain {key.domain}" if key.domain else ""
    )
    audit.record(
        session=session, action=Action.api_key_created, actor=actor, now=now, reason=reason
    )
    return key, secret


def revoke_api_key_audited(*, session: Session, key_id: int, actor: str, now: datetime) -> ApiKey:
    """`revoke_api_key` with its audit row under the acting key's name."""
    key = revoke_api_key(session=session, key_id=key_id, now=now)
    reason = f"key {key.id} {key.name!r}, scope {key.scope}"
    audit.record(
        session=session, action=Action.api_key_revoked, actor=actor, now=now, reason=reason
    )
    return key
