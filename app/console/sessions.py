"""Operators' sign-in: an admin key opens a server-side session of 8 hours; the browser
keeps only a random token in a cookie. Revoking the key ends its sessions at once, because
every request looks the key up again."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlmodel import Session, col

from app.auth import ApiKey, Scope, find_active_key, hash_secret
from app.console.models import ConsoleSession
from app.takedowns import audit
from app.takedowns.audit import Action

SESSION_LIFETIME = timedelta(hours=8)


@dataclass(frozen=True)
class Operator:
    """Who is signed in: the admin key's id and name (the audit actor), and the session."""

    key_id: int
    name: str
    session_id: int


class KeyCannotSignIn(Exception):
    """An unknown or revoked key, or one whose scope is not `admin`."""


def sign_in(*, session: Session, key: str, now: datetime) -> tuple[Operator, str]:
    """Open a session for an active admin key, audited under the key's name; returns the
    operator and the cookie's token (shown to the browser once, stored hashed)."""
    principal = find_active_key(session=session, secret=key)
    if principal is None or principal.scope != Scope.admin:
        raise KeyCannotSignIn()
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        token_hash=hash_secret(token),
        api_key_id=principal.key_id,
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    session.flush()
    audit.record(session=session, action=Action.console_signed_in, actor=principal.name, now=now)
    assert row.id is not None
    return Operator(key_id=principal.key_id, name=principal.name, session_id=row.id), token


def find_operator(*, session: Session, token: str, now: datetime) -> Operator | None:
    """The operator of a live session: not ended, not expired, its key still an active admin
    key."""
    if not token:
        return None
    row = session.execute(
        select(col(ConsoleSession.id), col(ApiKey.id).label("key_id"), col(ApiKey.name))
        .join(ApiKey, col(ApiKey.id) == col(ConsoleSession.api_key_id))
        .where(
            col(ConsoleSession.token_hash) == hash_secret(token),
            col(ConsoleSession.ended_at).is_(None),
            col(ConsoleSession.expires_at) > now,
            col(ApiKey.revoked_at).is_(None),
            col(ApiKey.scope) == Scope.admin.value,
        )
    ).first()
    if row is None:
        return None
    return Operator(key_id=row.key_id, name=row.name, session_id=row.id)


def sign_out(*, session: Session, operator: Operator, now: datetime) -> None:
    """End the session on the server (the cookie alone no longer signs anyone in), audited."""
    session.execute(
        update(ConsoleSession)
        .where(
            col(ConsoleSession.id) == operator.session_id, col(ConsoleSession.ended_at).is_(None)
        )
        .values(ended_at=now)
    )
    audit.record(session=session, action=Action.console_signed_out, actor=operator.name, now=now)


def forget_ended_sessions(*, session: Session, now: datetime) -> int:
    """Delete sessions that ended (signed out) or expired: they can sign no one in, and the
    audit keeps who signed in and out. For the workers' sweeps."""
    ended = session.execute(
        delete(ConsoleSession).where(
            or_(col(ConsoleSession.ended_at).is_not(None), col(ConsoleSession.expires_at) <= now)
        )
    )
    return int(ended.rowcount)  # type: ignore[attr-defined]
