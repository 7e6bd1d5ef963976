"""TXT lookups for publishers' domain verifications, with dnspython: the servers of
BYLINE_DNS_NAMESERVERS, or the system's resolver when it is unset.

A lookup is an answer, never an exception: the record is there (its strings), it is not
(no such name, or no TXT record at it), or the lookup failed (a timeout, SERVFAIL, no server
reachable), so that what a publisher and an operator are told says which.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from app.config import Settings


class Outcome(StrEnum):
    found = "found"  # the name has TXT records: their strings are in the answer
    absent = "absent"  # the DNS answered: no such name, or no TXT record at it
    failed = "failed"  # no answer: timed out, SERVFAIL, refused, no server reachable


@dataclass(frozen=True)
class TxtAnswer:
    """What the TXT lookup of one name gave: the records' strings, or in words why none."""

    outcome: Outcome
    strings: tuple[str, ...] = ()
    detail: str = ""


TxtLookup = Callable[[str], TxtAnswer]


def resolver_for(settings: Settings) -> dns.resolver.Resolver:
    """A resolver asking BYLINE_DNS_NAMESERVERS (the system's resolver when unset), giving up
    after BYLINE_DNS_TIMEOUT_SECONDS."""
    servers = settings.nameservers
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(server.address, server.port) for server in servers
        ]
    resolver.timeout = settings.dns_timeout_seconds
    resolver.lifetime = settings.dns_timeout_seconds
    return resolver


def lookup_txt(name: str, *, settings: Settings) -> TxtAnswer:
    """The TXT strings at `name` (each record's strings joined, as RFC 7208 reads them)."""
    try:
        # Made per lookup: the system's configuration may change, or be missing (a failure
        # of this lookup, not of the process).
        resolver = resolver_for(settings)
        answer = resolver.resolve(dns.name.from_text(name), dns.rdatatype.TXT, search=False)
    except dns.resolver.NXDOMAIN:
        return TxtAnswer(Outcome.absent, detail=f"{name} does not exist")
    except dns.resolver.NoAnswer:
        return TxtAnswer(Outcome.absent, detail=f"{name} has no TXT record")
    except dns.resolver.LifetimeTimeout:
        timeout = settings.dns_timeout_seconds
        return TxtAnswer(Outcome.failed, detail=f"no DNS answer within {timeout:g} seconds")
    except dns.resolver.NoNameservers:
        return TxtAnswer(
            Outcome.failed, detail="the DNS servers answered with an error (SERVFAIL or REFUSED)"
        )
    except (dns.exception.DNSException, OSError) as exc:
        return TxtAnswer(Outcome.failed, detail=f"{type(exc).__name__}: {exc}")
    strings = tuple(b"".join(record.strings).decode("utf-8", errors="replace") for record in answer)
    return TxtAnswer(Outcome.found, strings=strings)


def txt_lookup(settings: Settings) -> TxtLookup:
    """`lookup_txt` with these settings: what services take as their `lookup`."""

    def lookup(name: str) -> TxtAnswer:
        return lookup_txt(name, settings=settings)

    return lookup
