"""When a takedown's removals run: pure rules on the proof a request carries, driven by
settings, with the clock passed in. Proof decides, never the address someone typed:

- unconfirmed (the claimant has not pressed the button behind the e-mailed link): nothing
  runs and nothing is blocked; still unconfirmed when the review window ends, the request
  goes to an operator;
- a confirmed mailbox at the registrable domain of every target, that domain not a public
  mailbox provider: removal runs at once;
- a confirmed mailbox anywhere else: removal runs when the review window ends, so that an
  operator can stop a false claim first;
- a publisher key (a domain proven by DNS): removal runs at once, whole-domain opt-outs
  included;
- what looks like abuse is escalated: nothing runs until an operator approves.
"""

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from app.articles.service import ArticleFacts
from app.articles.urls import registrable_domain, same_registrable_domain
from app.config import TAKEDOWN_DEADLINE, Settings
from app.takedowns.mailboxes import address_domain, is_public_provider


class Proof(StrEnum):
    """What vouches for a request, weakest first."""

    legacy = "legacy"  # filed before e-mail confirmation existed: decided as it was then
    unconfirmed = "unconfirmed"
    mailbox = "confirmed_mailbox"
    publisher = "publisher"  # a key earned by a DNS TXT record


def due_at(received_at: datetime) -> datetime:
    """The promise: removed within 24 hours of receipt. Never moved."""
    return received_at + TAKEDOWN_DEADLINE


def mailbox_matches_every_target(*, claimant_email: str, hosts: Sequence[str]) -> bool:
    """A mailbox that speaks for every host a request names: the same registrable domain as
    each, and not a public mailbox provider. A request naming no host is not matched."""
    mailbox_domain = address_domain(claimant_email)
    if not hosts or is_public_provider(mailbox_domain):
        return False
    return all(same_registrable_domain(mailbox_domain, host) for host in hosts)


def mailbox_domain_if_proof(claimant_email: str) -> str | None:
    """The registrable domain a mailbox could prove, once confirmed (None for a public
    mailbox provider, which proves nothing about any domain)."""
    mailbox_domain = address_domain(claimant_email)
    if is_public_provider(mailbox_domain):
        return None
    return registrable_domain(mailbox_domain) or None


def escalation_reasons(
    *,
    proof: Proof,
    named: int,
    articles: Sequence[ArticleFacts],
    domain: str | None,
    original_published_at: datetime | None,
    settings: Settings,
) -> list[str]:
    """Why a request looks like abuse and must wait for an operator (empty: it does not).
    `named` counts what the request would take down or block: articles and URLs."""
    reasons = []
    limit = (
        settings.takedown_max_publisher_targets
        if proof == Proof.publisher
        else settings.takedown_max_auto_targets
    )
    if named > limit:
        reasons.append(
            f"names {named} articles or addresses; more than {limit} are never removed "
            "without an operator"
        )
    if domain is not None and proof != Proof.publisher:
        reasons.append(
            f"asks for the whole domain {domain} without a publisher key (DNS proof); "
            "an operator decides"
        )
    if original_published_at is not None and articles and proof != Proof.publisher:
        first_seen = min(article.first_seen_at for article in articles)
        if original_published_at > first_seen:
            reasons.append(
                f"claims an original published {original_published_at.isoformat()}, after we "
                f"first saw the content ({first_seen.isoformat()})"
            )
    return reasons


@dataclass(frozen=True)
class Schedule:
    """When a request that may run runs, and why (for the audit log)."""

    run_at: datetime
    why: str


def schedule_for_publisher(*, received_at: datetime) -> Schedule:
    return Schedule(received_at, "filed with a publisher key for its own domain: runs at once")


def schedule_on_confirmation(
    *,
    claimant_email: str,
    hosts: Sequence[str],
    received_at: datetime,
    now: datetime,
    settings: Settings,
) -> Schedule:
    """The claimant just confirmed the address: at once when the mailbox speaks for every
    target, otherwise when the review window (counted from receipt) ends."""
    if mailbox_matches_every_target(claimant_email=claimant_email, hosts=hosts):
        return Schedule(now, "the confirmed mailbox is at the domain of every target: runs at once")
    run_at = max(now, received_at + settings.takedown_review_window)
    return Schedule(
        run_at,
        "the confirmed mailbox is not at the domain of every target: runs after the review "
        f"window, at {run_at.isoformat()}",
    )


def confirmation_overdue(*, received_at: datetime, now: datetime, settings: Settings) -> bool:
    """An unconfirmed request whose review window has ended goes to an operator."""
    return now >= received_at + settings.takedown_review_window


# A rejected claimant may appeal once, this many calendar months after the rejection.
APPEAL_MONTHS = 6


def appeal_closes_at(rejected_at: datetime) -> datetime:
    """The end of the appeal window: the same day and time 6 calendar months after the
    rejection (the month's last day when it has no such day: 31 August -> 28 February)."""
    month_index = rejected_at.month - 1 + APPEAL_MONTHS
    year, month = rejected_at.year + month_index // 12, month_index % 12 + 1
    day = min(rejected_at.day, calendar.monthrange(year, month)[1])
    return rejected_at.replace(year=year, month=month, day=day)


def appeal_due_at(*, filed_at: datetime, settings: Settings) -> datetime:
    """An operator decides an appeal within BYLINE_APPEAL_REVIEW_DAYS of its filing."""
    return filed_at + timedelta(days=settings.appeal_review_days)
