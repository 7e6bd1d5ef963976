"""Filing a takedown and confirming the claimant's address: where proof is gathered.

A filing only records the request and e-mails the claimant a confirmation link; nothing is
removed or blocked on an address someone typed. Pressing the link's button is the mailbox's
proof, and policy decides from it when the removals run. A publisher key (a domain proven
by DNS) is proof by itself: its filings within its domain take effect at once.
"""

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from app.articles.service import article_facts
from app.articles.urls import registrable_domain, same_registrable_domain, source_domain
from app.auth import Principal, hash_secret
from app.config import TAKEDOWN_DEADLINE, Settings
from app.errors import Conflict, FieldError, NotFound, ProblemError
from app.notifications import outbox as notifications
from app.notifications.models import EmailKind
from app.takedowns import audit, lifecycle, policy
from app.takedowns.audit import Action
from app.takedowns.mailboxes import mailbox_key
from app.takedowns.models import Takedown, TakedownStatus, TargetKind
from app.takedowns.policy import Proof
from app.takedowns.ratelimit import limit_confirmation, limit_filing
from app.takedowns.schemas import TakedownIn
from app.takedowns.targets import (
    Resolution,
    TargetView,
    resolve_targets,
    target_rows,
    targets_of,
    unmatched_details,
    views_of,
)

S = TakedownStatus
# A filing that repeats one of the last 24 hours (same mailbox, same targets) is linked to it.
DUPLICATE_WINDOW = TAKEDOWN_DEADLINE
# Compared against when the id is unknown, so that answering takes the same work.
NO_SECRET_HASH = hash_secret("no such request")


@dataclass(frozen=True)
class Filed:
    """The outcome of a filing: the request, its secret status token and its targets."""

    takedown: Takedown
    token: str
    targets: list[TargetView]


def filing_fingerprint(*, email: str, resolution: Resolution) -> str:
    """SHA-256 of the claimant's mailbox and what the request names, however either was
    spelled."""
    identity = {"mailbox": mailbox_key(email), "targets": resolution.identity()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def find_duplicate(*, session: Session, fingerprint: str, now: datetime) -> str | None:
    """The id of a request with this fingerprint filed in the last 24 hours, not withdrawn."""
    return session.scalars(
        select(col(Takedown.id))
        .where(
            col(Takedown.fingerprint) == fingerprint,
            col(Takedown.received_at) > now - DUPLICATE_WINDOW,
            col(Takedown.status) != S.withdrawn,
        )
        .order_by(col(Takedown.received_at))
        .limit(1)
    ).first()


def _outside_publisher_domain(
    resolution: Resolution, domain: str | None, publisher_domain: str
) -> list[FieldError]:
    """Every target a publisher key may not name: anything outside its registrable domain."""
    errors = []
    for target in resolution.targets:
        if target.kind == TargetKind.domain:
            continue
        if target.article_id is not None:
            host = resolution.facts[target.article_id].source_domain
        else:
            host = source_domain(target.canonical_url or "")
        if not same_registrable_domain(host, publisher_domain):
            errors.append(
                FieldError(
                    field=f"targets.{target.position}",
                    message=f"is outside {publisher_domain}, the domain this key speaks for",
                )
            )
    if domain is not None and not same_registrable_domain(domain, publisher_domain):
        errors.append(
            FieldError(
                field="domain", message=f"is outside {publisher_domain}, the domain of this key"
            )
        )
    # One error per target, however many articles it resolved to.
    return list({error.field: error for error in errors}.values())


def file_takedown(
    *,
    session: Session,
    filing: TakedownIn,
    client_address: str,
    settings: Settings,
    now: datetime,
    publisher: Principal | None = None,
) -> Filed:
    """File a request: resolve its targets, count it against the rate limits, record it and
    e-mail the claimant the confirmation link. Abuse goes to an operator at once; a
    publisher key's filing takes effect at once; any other waits for its confirmation.

    Order matters: targets are resolved (422) and a publisher's scope checked (403) before
    the attempt is counted, and a 429 is raised before anything else is written, so the
    caller's rollback leaves no trace."""
    resolution = resolve_targets(
        session=session,
        targets=filing.targets,
        domain=filing.domain,
        public_base_url=settings.public_base_url,
    )
    if publisher is not None:
        assert publisher.domain is not None
        outside = _outside_publisher_domain(resolution, filing.domain, publisher.domain)
        if outside:
            raise ProblemError(
                403,
                "outside-publisher-domain",
                f"A publisher key files takedowns of {publisher.domain} only.",
                errors=outside,
            )
    domains = {registrable_domain(host) for host in resolution.hosts()}
    # A mailbox at a domain it names is not counted against that domain: junk filed by
    # others cannot lock the domain's own people out (their confirmation links go to the
    # domain itself, and their client addresses are counted as anyone's).
    own = policy.mailbox_domain_if_proof(filing.claimant.email)
    limit_filing(
        session=session,
        client_address=client_address,
        domains=[] if publisher is not None else sorted(d for d in domains if d and d != own),
        per_address=settings.rate_per_address,
        per_domain=settings.rate_per_domain,
        now=now,
    )
    claimant = filing.claimant
    fingerprint = filing_fingerprint(email=claimant.email, resolution=resolution)
    earlier = find_duplicate(session=session, fingerprint=fingerprint, now=now)
    proof = Proof.publisher if publisher is not None else Proof.unconfirmed
    reasons = policy.escalation_reasons(
        proof=proof,
        named=resolution.named_count(),
        articles=resolution.live_facts,
        domain=filing.domain,
        original_published_at=filing.original_published_at,
        settings=settings,
    )
    token = secrets.token_urlsafe(32)
    code = secrets.token_urlsafe(32) if publisher is None else None
    takedown = Takedown(
        id=str(uuid.uuid4()),
        status=S.received,
        reason=filing.reason,
        claimant_name=claimant.name,
        claimant_email=claimant.email,
        claimant_organization=claimant.organization,
        claimant_role=claimant.role,
        claimant_acting_for=claimant.acting_for,
        explanation=filing.explanation,
        signature=filing.signature,
        domain=filing.domain,
        original_url=filing.original_url,
        original_published_at=filing.original_published_at,
        token_hash=hash_secret(token),
        confirmation_hash=hash_secret(code) if code is not None else None,
        publisher_key_id=publisher.key_id if publisher is not None else None,
        fingerprint=fingerprint,
        duplicate_of=earlier,
        received_at=now,
        due_at=policy.due_at(now),
        escalation_reasons=reasons or None,
    )
    session.add(takedown)
    session.flush()
    session.add_all(target_rows(takedown_id=takedown.id, resolution=resolution))
    session.flush()
    views = views_of(session=session, takedown_id=takedown.id)
    actor = publisher.name if publisher is not None else audit.CLAIMANT
    lifecycle.record_transition(
        session,
        takedown,
        Action.filed,
        actor,
        now,
        to_status=S.received,
        reason=f"repeats request {earlier}" if earlier else None,
    )
    notifications.notify_claimant(
        session=session,
        takedown=takedown,
        kind=EmailKind.receipt,
        now=now,
        token=token,
        confirmation_code=code,
        details={
            "escalated": bool(reasons),
            "proof": proof.value,
            "review_window_ends_at": (now + settings.takedown_review_window).isoformat(),
            "unmatched_targets": unmatched_details(views),
        },
    )
    if reasons:
        lifecycle.move(
            session,
            takedown,
            action=Action.escalated,
            actor=audit.POLICY,
            now=now,
            allowed={S.received},
            to=S.escalated,
            reason="; ".join(reasons),
        )
        lifecycle.hold_removals(session, takedown, now)
    elif publisher is not None:
        schedule = policy.schedule_for_publisher(received_at=now)
        lifecycle.move(
            session,
            takedown,
            action=Action.queued,
            actor=audit.POLICY,
            now=now,
            allowed={S.received},
            to=S.queued,
            reason=schedule.why,
            values={"run_at": schedule.run_at},
        )
        lifecycle.start_removals(session, takedown, audit.POLICY, schedule.run_at, now)
    if reasons or publisher is not None:
        views = views_of(session=session, takedown_id=takedown.id)
    return Filed(takedown, token, views)


def named_hosts(session: Session, takedown: Takedown) -> list[str]:
    """Every host a filed request names: its articles' sources, its unmatched URLs' hosts
    and its domain."""
    rows = targets_of(session=session, takedown_id=takedown.id)
    facts = article_facts(
        session=session, article_ids=[row.article_id for row in rows if row.article_id]
    )
    hosts = {fact.source_domain for fact in facts.values()}
    hosts.update(
        source_domain(row.canonical_url)
        for row in rows
        if row.article_id is None and row.canonical_url is not None
    )
    if takedown.domain is not None:
        hosts.add(takedown.domain)
    return sorted(hosts)


def _for_code(session: Session, takedown_id: str, code: str) -> Takedown:
    takedown = session.get(Takedown, takedown_id) if len(takedown_id) <= 36 else None
    expected = (takedown.confirmation_hash if takedown else None) or NO_SECRET_HASH
    matches = hmac.compare_digest(hash_secret(code), expected)
    # A request without a code (a publisher key's, or one filed before codes existed) is
    # compared against the stand-in hash too; a code that hashes to it confirms nothing.
    if not matches or takedown is None or takedown.confirmation_hash is None:
        raise NotFound("No takedown request with this id and confirmation code.")
    return takedown


def check_confirmation_code(
    *, session: Session, takedown_id: str, code: str, now: datetime
) -> Takedown:
    """The request this code confirms, if it still may (for the page that shows the button):
    404 for a wrong or foreign code, 409 once used or when the request has ended, 410 past
    the request's deadline."""
    takedown = _for_code(session, takedown_id, code)
    if takedown.email_confirmed_at is not None:
        raise Conflict(
            f"This address was confirmed already, on {takedown.email_confirmed_at.isoformat()}."
        )
    if now >= takedown.due_at:
        raise ProblemError(
            410,
            "confirmation-expired",
            "This confirmation link expired with the request's 24-hour deadline; file the "
            "request again.",
        )
    if takedown.status not in (S.received, S.queued, S.escalated, S.executing):
        raise Conflict(f"This request is {takedown.status}; there is nothing left to confirm.")
    return takedown


def confirm_takedown(
    *, session: Session, takedown_id: str, code: str, settings: Settings, now: datetime
) -> Takedown:
    """The claimant pressed the button behind the e-mailed link: the mailbox is proven.
    Counted against the mailbox (429 over its limit; the link keeps working). A request
    waiting for this is queued, to run at once or after the review window as policy says;
    one with an operator stays with the operator, who now sees the proof."""
    check_confirmation_code(session=session, takedown_id=takedown_id, code=code, now=now)
    takedown = lifecycle.locked(session, takedown_id)
    check_confirmation_code(session=session, takedown_id=takedown_id, code=code, now=now)
    limit_confirmation(
        session=session,
        mailbox=mailbox_key(takedown.claimant_email),
        per_mailbox=settings.rate_per_email,
        now=now,
    )
    table = Takedown.__table__  # type: ignore[attr-defined]
    confirmed = session.execute(
        update(table)
        .where(table.c.id == takedown.id, table.c.email_confirmed_at.is_(None))
        .values(email_confirmed_at=now)
    )
    if confirmed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("This address was confirmed already.")
    set_committed_value(takedown, "email_confirmed_at", now)
    lifecycle.record_transition(
        session, takedown, Action.confirmed, audit.CLAIMANT, now, reason="the e-mailed link"
    )
    if takedown.status == S.received and policy.confirmation_overdue(
        received_at=takedown.received_at, now=now, settings=settings
    ):
        # The sweep would have escalated it unconfirmed: which of the two ran first must
        # not decide whether an operator sees it.
        lifecycle.escalate_unconfirmed(session, takedown, now)
    elif takedown.status == S.received:
        schedule = policy.schedule_on_confirmation(
            claimant_email=takedown.claimant_email,
            hosts=named_hosts(session, takedown),
            received_at=takedown.received_at,
            now=now,
            settings=settings,
        )
        lifecycle.move(
            session,
            takedown,
            action=Action.queued,
            actor=audit.POLICY,
            now=now,
            allowed={S.received},
            to=S.queued,
            reason=schedule.why,
            values={"run_at": schedule.run_at},
        )
        # Until now nothing blocked its URLs: articles may have arrived since filing.
        lifecycle.add_late_arrivals(session, takedown)
        lifecycle.start_removals(session, takedown, audit.POLICY, schedule.run_at, now)
    return takedown
