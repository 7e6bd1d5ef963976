"""Publishers prove a domain with a DNS TXT record, as search consoles do: starting a
verification, checking it (which issues the publisher key once), and the daily re-check
that lapses the key of a record gone for the grace period.

DNS is asked outside any transaction: on SQLite a write transaction holds the database's
only write lock, and a lookup may wait BYLINE_DNS_TIMEOUT_SECONDS. So a check and a re-check
each write in short transactions of their own, before and after the lookup; every status
change in them is a conditional UPDATE, so two checks (or two runners) never both act.
"""

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, select, update
from sqlmodel import Session

from app.articles.urls import registrable_domain
from app.auth import Scope, create_api_key, revoke_api_key
from app.config import Settings
from app.db import new_session, writer
from app.errors import NotFound
from app.notifications.models import EmailKind
from app.notifications.outbox import notify_publisher
from app.publishers.dns import Outcome, TxtAnswer, TxtLookup, txt_lookup
from app.publishers.models import PublisherVerification, VerificationStatus
from app.takedowns import audit
from app.takedowns.audit import Action
from app.takedowns.ratelimit import limit
from app.web.pages import duration_words

PV = PublisherVerification.__table__  # type: ignore[attr-defined]
V = VerificationStatus

RECORD_PREFIX = "_byline-verify."
VALUE_PREFIX = "byline-verify="
VERIFICATION_LIFETIME = timedelta(days=7)
RECHECK_INTERVAL = timedelta(hours=24)
# Each re-check may wait the DNS timeout; a tick of the notification runner must not hold
# the e-mails and webhooks of the next tick back for long.
RECHECK_BATCH = 20
# A runner that dies holding claimed rows leaves them due again this much later: far longer
# than a batch can take, far shorter than the daily interval.
RECHECK_LEASE = timedelta(hours=1)


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
        if not _seen(answer, verification.record_value):
            session.execute(
                update(PV)
                .where(PV.c.id == verification.id, PV.c.status == V.pending)
                .values(last_checked_at=now, last_check_error=_why_not_seen(answer))
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


def _seen(answer: TxtAnswer, record_value: str) -> bool:
    return answer.outcome == Outcome.found and record_value in answer.strings


def _why_not_seen(answer: TxtAnswer) -> str:
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
            next_check_at=now + RECHECK_INTERVAL,
        )
    )
    if verified.rowcount != 1:  # type: ignore[attr-defined]
        return None
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
            **_record_details(domain, verification.record_value),
            "verified_at": now.isoformat(),
            "grace_words": duration_words(settings.publisher_record_grace),
        },
    )
    return secret


def _record_details(domain: str, record_value: str) -> dict[str, Any]:
    return {"domain": domain, "record_name": record_name(domain), "record_value": record_value}


# The daily re-check --------------------------------------------------------------------


def claim_due_rechecks(*, session: Session, now: datetime, limit: int) -> list[Row[Any]]:
    """Verified rows whose re-check is due (oldest due first, at most `limit`), claimed by
    pushing their next check a lease ahead: a row another runner claimed first is not
    returned. Each row carries `claimed_until`, which its outcome is recorded against."""
    due = list(
        session.scalars(
            select(PV.c.id)
            .where(PV.c.status == V.verified, PV.c.next_check_at <= now)
            .order_by(PV.c.next_check_at, PV.c.id)
            .limit(limit)
        )
    )
    if not due:
        return []
    until = now + RECHECK_LEASE
    return list(
        session.execute(
            update(PV)
            .where(PV.c.id.in_(due), PV.c.status == V.verified, PV.c.next_check_at <= now)
            .values(next_check_at=until)
            .returning(
                PV.c.id,
                PV.c.domain,
                PV.c.email,
                PV.c.record_value,
                PV.c.record_missing_since,
                PV.c.api_key_id,
                PV.c.next_check_at.label("claimed_until"),
            )
        ).all()
    )


def recheck_publisher_records(
    *,
    engine: Engine,
    settings: Settings,
    now: datetime,
    lookup: TxtLookup,
    batch_size: int = RECHECK_BATCH,
) -> int:
    """The daily re-check of verified records that are due: claim a batch, look each up
    outside any transaction, record each outcome in its own. Returns the rows checked.

    Seen: the next check in 24 hours (a record that was missing is audited as back). Not
    seen, absent or the lookup failed alike (the record could not be seen): the first miss
    is audited and e-mailed; missing for the grace period, the verification lapses and its
    key is revoked (audited, e-mailed)."""
    with new_session(writer(engine)) as session, session.begin():
        claimed = claim_due_rechecks(session=session, now=now, limit=batch_size)
    for row in claimed:
        answer = lookup(record_name(row.domain))
        with new_session(writer(engine)) as session, session.begin():
            record_recheck(session=session, claimed=row, answer=answer, settings=settings, now=now)
    return len(claimed)


def record_recheck(
    *, session: Session, claimed: Row[Any], answer: TxtAnswer, settings: Settings, now: datetime
) -> None:
    """Record one re-check's outcome, if the row is still this runner's claim."""
    mine = (
        PV.c.id == claimed.id,
        PV.c.status == V.verified,
        PV.c.next_check_at == claimed.claimed_until,
    )
    if _seen(answer, claimed.record_value):
        recorded = session.execute(
            update(PV)
            .where(*mine)
            .values(
                record_missing_since=None,
                last_checked_at=now,
                last_check_error=None,
                next_check_at=now + RECHECK_INTERVAL,
            )
        )
        if recorded.rowcount == 1 and claimed.record_missing_since is not None:  # type: ignore[attr-defined]
            audit.record(
                session=session,
                action=Action.publisher_record_seen,
                actor=audit.SCHEDULER,
                now=now,
                verification_id=claimed.id,
                reason=f"missing since {claimed.record_missing_since.isoformat()}",
            )
        return
    missing_since: datetime = claimed.record_missing_since or now
    lapses = now - missing_since >= settings.publisher_record_grace
    values: dict[str, Any] = {
        "record_missing_since": missing_since,
        "last_checked_at": now,
        "last_check_error": _why_not_seen(answer),
    }
    if lapses:
        values.update(status=V.lapsed, lapsed_at=now, next_check_at=None)
    else:
        values.update(next_check_at=now + RECHECK_INTERVAL)
    recorded = session.execute(update(PV).where(*mine).values(**values))
    if recorded.rowcount != 1:  # type: ignore[attr-defined]
        return  # claimed again since (this runner outlived its lease): the other records it
    details = _record_details(claimed.domain, claimed.record_value)
    if claimed.record_missing_since is None:
        _record_first_miss(session, claimed, details, values["last_check_error"], settings, now)
    if lapses:
        _lapse(session, claimed, details, missing_since, now)


def _record_first_miss(
    session: Session,
    claimed: Row[Any],
    details: dict[str, Any],
    why: str,
    settings: Settings,
    now: datetime,
) -> None:
    audit.record(
        session=session,
        action=Action.publisher_record_missing,
        actor=audit.SCHEDULER,
        now=now,
        verification_id=claimed.id,
        reason=why,
    )
    notify_publisher(
        session=session,
        verification_id=claimed.id,
        recipient=claimed.email,
        kind=EmailKind.publisher_record_missing,
        now=now,
        details={
            **details,
            "missing_since": now.isoformat(),
            "lapses_at": (now + settings.publisher_record_grace).isoformat(),
        },
    )


def _lapse(
    session: Session,
    claimed: Row[Any],
    details: dict[str, Any],
    missing_since: datetime,
    now: datetime,
) -> None:
    if claimed.api_key_id is not None:
        revoke_api_key(session=session, key_id=claimed.api_key_id, now=now)
    audit.record(
        session=session,
        action=Action.publisher_lapsed,
        actor=audit.SCHEDULER,
        now=now,
        verification_id=claimed.id,
        from_status=V.verified,
        to_status=V.lapsed,
        reason=f"TXT record missing since {missing_since.isoformat()}; "
        f"publisher key {claimed.api_key_id} revoked",
    )
    notify_publisher(
        session=session,
        verification_id=claimed.id,
        recipient=claimed.email,
        kind=EmailKind.publisher_lapsed,
        now=now,
        details={
            **details,
            "missing_since": missing_since.isoformat(),
            "lapsed_at": now.isoformat(),
        },
    )


def publisher_rechecks(
    *, engine: Engine, settings: Settings, lookup: TxtLookup | None = None
) -> Callable[[datetime], int]:
    """The re-check as the notification runner calls it each tick: `(now) -> rows checked`."""
    dns_lookup = lookup or txt_lookup(settings)

    def run(now: datetime) -> int:
        return recheck_publisher_records(
            engine=engine, settings=settings, now=now, lookup=dns_lookup
        )

    return run
