"""Publishers prove a domain with a DNS TXT record, as search consoles do: starting a
verification and checking it (which issues the publisher key once, and schedules the daily
re-check of `rechecks.py`).

DNS is asked outside any transaction: on SQLite a write transaction holds the database's
only write lock, and a lookup may wait BYLINE_DNS_TIMEOUT_SECONDS. So a check writes in
short transactions of its own, before and after the lookup; every status change in them is
a conditional UPDATE, so two checks never both act.
"""

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session

from app.articles.urls import registrable_domain
from app.auth import Scope, create_api_key
from app.config import Settings
from app.db import new_session, writer
from app.dialects import dialect_of
from app.errors import NotFound
from app.jobs.models import JobStatus
from app.notifications.models import EmailKind
from app.notifications.outbox import notify_publisher
from app.publishers.dns import Outcome, TxtAnswer, TxtLookup
from app.publishers.models import PublisherRecheck, PublisherVerification, VerificationStatus
from app.takedowns import audit
from app.takedowns.audit import Action
from app.takedowns.ratelimit import limit
from app.web.pages import duration_words

PV = PublisherVerification.__table__  # type: ignore[attr-defined]
PR = PublisherRecheck.__table__  # type: ignore[attr-defined]
V = VerificationStatus

RECORD_PREFIX = "_byline-verify."
VALUE_PREFIX = "byline-verify="
VERIFICATION_LIFETIME = timedelta(days=7)
RECHECK_INTERVAL = timedelta(hours=24)


def record_name(domain: str) -> str:
    """Where the TXT record of a domain's verification is published."""
    return RECORD_PREFIX + domain


def status_at(verification: PublisherVerification, now: datetime) -> VerificationStatus:
    """The status as of `now`: a pending verification past its expiry is expired, even
    before a check records it."""
    status = V(verification.status)
    if status == V.pending and now >= verification.expires_at:
        return V.expired
    return status


def start_verification(
    *,
    session: Session,
    domain: str,
    email: str,
    client_address: str,
    settings: Settings,
    now: datetime,
) -> PublisherVerification:
    """A new pending verification of the domain's registrable domain, with a random record
    value; counted against the client address (429 over its limit)."""
    limit(
        session=session,
        counts=[
            (
                "verify-addr",
                client_address,
                settings.rate_per_verification_address,
                "domain verifications from this address",
            )
        ],
        now=now,
    )
    verification = PublisherVerification(
        id=str(uuid.uuid4()),
        domain=registrable_domain(domain) or domain,
        email=email,
        record_value=VALUE_PREFIX + secrets.token_urlsafe(32),
        status=V.pending,
        created_at=now,
        expires_at=now + VERIFICATION_LIFETIME,
    )
    session.add(verification)
    session.flush()
    return verification


def get_verification(*, session: Session, verification_id: str) -> PublisherVerification:
    """One verification; 404 when unknown."""
    verification = (
        session.get(PublisherVerification, verification_id, populate_existing=True)
        if len(verification_id) <= 36
        else None
    )
    if verification is None:
        raise NotFound("No domain verification with this id.")
    return verification


@dataclass(frozen=True)
class Checked:
    """A check's outcome: the verification, and the publisher key if this check issued it
    (its only appearance: we keep its hash)."""

    verification: PublisherVerification
    publisher_key: str | None = None


def check_verification(
    *,
    engine: Engine,
    verification_id: str,
    settings: Settings,
    now: datetime,
    lookup: TxtLookup,
) -> Checked:
    """Look the TXT record up: seen with the verification's value, a pending verification is
    verified and its publisher key issued (and returned, this once). Counted against the
    verification (429 over its limit); 404 when unknown. A pending one past its expiry is
    expired without a lookup; a verified, lapsed or expired one answers as it stands."""
    with new_session(writer(engine)) as session, session.begin():
        verification = get_verification(session=session, verification_id=verification_id)
        _count_check(session, verification, settings, now)
        if status_at(verification, now) == V.expired:
            _expire(session, verification, now)
            return Checked(get_verification(session=session, verification_id=verification.id))
    if verification.status != V.pending:
        return Checked(verification)
    answer = lookup(record_name(verification.domain))
    with new_session(writer(engine)) as session, session.begin():
        if not record_seen(answer, verification.record_value):
            session.execute(
                update(PV)
                .where(PV.c.id == verification.id, PV.c.status == V.pending)
                .values(last_checked_at=now, last_check_error=why_not_seen(answer))
            )
            return Checked(get_verification(session=session, verification_id=verification.id))
        secret = _verify(session, verification, settings, now)
        return Checked(get_verification(session=session, verification_id=verification.id), secret)


def _count_check(
    session: Session, verification: PublisherVerification, settings: Settings, now: datetime
) -> None:
    limit(
        session=session,
        counts=[
            (
                "verify-check",
                verification.id,
                settings.rate_per_verification_check,
                "checks of this verification",
            )
        ],
        now=now,
    )


def _expire(session: Session, verification: PublisherVerification, now: datetime) -> None:
    expired = session.execute(
        update(PV)
        .where(PV.c.id == verification.id, PV.c.status == V.pending)
        .values(status=V.expired, last_checked_at=now)
    )
    if expired.rowcount == 1:  # type: ignore[attr-defined]
        audit.record(
            session=session,
            action=Action.publisher_expired,
            actor=audit.PUBLISHER,
            now=now,
            verification_id=verification.id,
            from_status=V.pending,
            to_status=V.expired,
            reason=f"not verified by {verification.expires_at.isoformat()}",
        )


def record_seen(answer: TxtAnswer, record_value: str) -> bool:
    return answer.outcome == Outcome.found and record_value in answer.strings


def why_not_seen(answer: TxtAnswer) -> str:
    if answer.outcome == Outcome.failed:
        return f"lookup failed: {answer.detail}"
    if answer.outcome == Outcome.found:
        return "no record: the TXT records there do not hold this verification's value"
    return f"no record: {answer.detail}"


def _verify(
    session: Session, verification: PublisherVerification, settings: Settings, now: datetime
) -> str | None:
    """Mark a pending verification verified and issue its key; None when another check did
    first (or it expired meanwhile)."""
    verified = session.execute(
        update(PV)
        .where(
            PV.c.id == verification.id,
            PV.c.status == V.pending,
            PV.c.expires_at > now,
        )
        .values(
            status=V.verified,
            verified_at=now,
            last_checked_at=now,
            last_check_error=None,
        )
    )
    if verified.rowcount != 1:  # type: ignore[attr-defined]
        return None
    schedule_recheck(session=session, verification_id=verification.id, now=now)
    domain = verification.domain
    key, secret = create_api_key(
        session=session,
        # api_keys.name holds 100 characters; a registrable domain may have 253.
        name=f"publisher {domain}"[:100],
        scope=Scope.publisher,
        domain=domain,
        now=now,
    )
    session.execute(update(PV).where(PV.c.id == verification.id).values(api_key_id=key.id))
    audit.record(
        session=session,
        action=Action.publisher_verified,
        actor=audit.PUBLISHER,
        now=now,
        verification_id=verification.id,
        from_status=V.pending,
        to_status=V.verified,
        reason=f"TXT record seen at {record_name(domain)}; publisher key {key.id} issued",
    )
    notify_publisher(
        session=session,
        verification_id=verification.id,
        recipient=verification.email,
        kind=EmailKind.publisher_verified,
        now=now,
        details={
            **record_details(domain, verification.record_value),
            "verified_at": now.isoformat(),
            "grace_words": duration_words(settings.publisher_record_grace),
        },
    )
    return secret


def record_details(domain: str, record_value: str) -> dict[str, Any]:
    return {"domain": domain, "record_name": record_name(domain), "record_value": record_value}


def schedule_recheck(*, session: Session, verification_id: str, now: datetime) -> None:
    """Queue the daily re-check of a verification just verified (again, if it had one)."""
    values = {
        "verification_id": verification_id,
        "status": JobStatus.queued.value,
        "run_at": now + RECHECK_INTERVAL,
        "attempts": 0,
        "created_at": now,
    }
    statement = dialect_of(session).insert(PR).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["verification_id"],
            set_={name: statement.excluded[name] for name in ("status", "run_at", "attempts")}
            | {"lease_owner": None, "lease_expires_at": None, "finished_at": None},
        )
    )
