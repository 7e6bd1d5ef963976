"""When a takedown's removals run: pure rules, driven by settings, with the clock passed in.

- A claimant whose e-mail domain is the same registrable domain as every targeted article's
  source (and as the requested domain) is verified: removal runs at once.
- Anyone else waits for the review window, so an operator can stop a false claim.
- Requests that look like abuse are escalated: they never run until an operator approves.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import tldextract

from app.articles.service import ArticleFacts
from app.config import TAKEDOWN_DEADLINE, Settings


@lru_cache(maxsize=1)
def _extractor() -> tldextract.TLDExtract:
    # The Public Suffix List snapshot shipped with the package: no download, no cache files.
    # Private suffixes count too, so `alice.github.io` is not `bob.github.io`.
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


def registrable_domain(host: str) -> str | None:
    """`uk.reuters.com` -> `reuters.com`; `bbc.co.uk` stays; a bare public suffix -> None."""
    domain = _extractor()(host.strip().rstrip(".").lower()).top_domain_under_public_suffix
    return domain or None


def same_registrable_domain(first: str, second: str) -> bool:
    """Whether two hosts belong to one registrable domain under the Public Suffix List."""
    left = registrable_domain(first)
    return left is not None and left == registrable_domain(second)


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


def due_at(received_at: datetime) -> datetime:
    """The promise: removed within 24 hours of receipt. Never moved."""
    return received_at + TAKEDOWN_DEADLINE


@dataclass(frozen=True)
class Decision:
    """What policy decided for a new request: when its removals run, or why it waits for an
    operator (`run_at` None and `escalation` set)."""

    verified: bool
    run_at: datetime | None
    escalation: str | None

    @property
    def escalated(self) -> bool:
        return self.escalation is not None


def claimant_is_verified(
    *, claimant_email: str, articles: Sequence[ArticleFacts], domain: str | None
) -> bool:
    """Every targeted article's source, and the requested domain, share the claimant's
    registrable e-mail domain. A request naming nothing that exists is not verified."""
    hosts = [article.source_domain for article in articles]
    if domain is not None:
        hosts.append(domain)
    sender = email_domain(claimant_email)
    return bool(hosts) and all(same_registrable_domain(sender, host) for host in hosts)


def escalation_reasons(
    *,
    claimant_email: str,
    articles: Sequence[ArticleFacts],
    domain: str | None,
    original_published_at: datetime | None,
    settings: Settings,
) -> list[str]:
    """Why a request looks like abuse (empty: it does not)."""
    reasons = []
    limit = settings.takedown_max_auto_targets
    if len(articles) > limit:
        reasons.append(
            f"names {len(articles)} articles; more than {limit} are never removed automatically"
        )
    if domain is not None and not same_registrable_domain(email_domain(claimant_email), domain):
        reasons.append(f"asks for the whole domain {domain} from an e-mail domain outside it")
    if original_published_at is not None and articles:
        first_seen = min(article.first_seen_at for article in articles)
        if original_published_at > first_seen:
            reasons.append(
                f"claims an original published {original_published_at.isoformat()}, after we "
                f"first saw the content ({first_seen.isoformat()})"
            )
    return reasons


def decide(
    *,
    claimant_email: str,
    articles: Sequence[ArticleFacts],
    domain: str | None,
    original_published_at: datetime | None,
    received_at: datetime,
    settings: Settings,
) -> Decision:
    """Run at once for a verified claimant, after the review window for others, never
    automatically for what looks like abuse."""
    verified = claimant_is_verified(claimant_email=claimant_email, articles=articles, domain=domain)
    reasons = escalation_reasons(
        claimant_email=claimant_email,
        articles=articles,
        domain=domain,
        original_published_at=original_published_at,
        settings=settings,
    )
    if reasons:
        return Decision(verified=verified, run_at=None, escalation="; ".join(reasons))
    run_at = received_at if verified else received_at + settings.takedown_review_window
    return Decision(verified=verified, run_at=run_at, escalation=None)
