"""URL rules: which source URLs we accept, and the canonical form that identifies an article."""

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# Click and campaign trackers: they say how a reader arrived, not which article it is.
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid",
        "igshid", "mc_cid", "mc_eid", "ref", "ref_src", "ref_url", "_ga", "_gl", "_hsenc",
        "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "cmpid", "ocid", "ncid",
        "spm", "soc_src", "soc_trk", "s_cid", "share", "ito",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_")
MAX_URL_LENGTH = 2048
_HOST = re.compile(r"^[a-z0-9.\-]+$|^\[[0-9a-f:.]+\]$")


class InvalidUrl(ValueError):
    """The text is not an absolute http(s) URL we accept."""


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(TRACKING_PREFIXES)


def _host(raw_host: str) -> str:
    host = raw_host.rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise InvalidUrl("the host name is not valid") from None
    if not host or not _HOST.match(host):
        raise InvalidUrl("the host name is not valid")
    return host


def normalise_url(url: str) -> str:
    """The canonical form: lower-case scheme and host, no default port, no fragment, no
    tracking parameters, query sorted, path case kept. Raises InvalidUrl."""
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise InvalidUrl(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in text):
        raise InvalidUrl("contains spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidUrl("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl("must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise InvalidUrl("must be an absolute http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("must not carry a user name or password")
    host = _host(parts.hostname)
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query_pairs = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(name)
    ]
    query = urlencode(sorted(query_pairs), quote_via=quote)
    return urlunsplit((scheme, netloc, path, query, ""))


def source_domain(canonical_url: str) -> str:
    """The publisher host of a canonical URL, without a leading `www.`."""
    host = urlsplit(canonical_url).hostname or ""
    return host.removeprefix("www.")


def domain_and_parents(host: str) -> list[str]:
    """`uk.news.example.com` -> itself, `news.example.com`, `example.com`, `com`."""
    labels = host.lower().strip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]
