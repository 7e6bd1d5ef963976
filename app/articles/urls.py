"""URL rules: which source URLs we accept, the canonical form that identifies an article, and
the matching key under which every way a rights holder may write that URL meets it."""

import re
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import tldextract

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
# RFC 1035 2.3.4 (and RFC 1123 2.1): a label is 1-63 octets, a name at most 253 in its
# dotted text form.
MAX_LABEL_LENGTH = 63
MAX_HOST_LENGTH = 253
_HOST = re.compile(r"^[a-z0-9.\-]+$|^\[[0-9a-f:.]+\]$")
# Hosts that serve the same articles as the bare domain: desktop, mobile and AMP editions.
EDITION_PREFIXES = ("www.", "m.", "amp.")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


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
    if len(host) > MAX_HOST_LENGTH:
        raise InvalidUrl(f"the host name is longer than {MAX_HOST_LENGTH} characters")
    if any(not 0 < len(label) <= MAX_LABEL_LENGTH for label in host.split(".")):
        raise InvalidUrl(f"each part of the host name must hold 1 to {MAX_LABEL_LENGTH} characters")
    return host


# Ingest normalises each URL more than once (validating it, keying the article, matching it
# against blocks): a pure function of its text, so remembered. Refusals are not remembered.
@lru_cache(maxsize=4096)
def normalise_url(url: str) -> str:
    """The canonical form: lower-case scheme and host, no default port, no fragment, no
    tracking parameters, query sorted, path case kept. Raises InvalidUrl."""
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise InvalidUrl(f"longer than {MAX_URL_LENGTH} characters")
    if _SPACE_OR_CONTROL.search(text):
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
    if port == 0:  # urlsplit refuses ports over 65535 itself
        raise InvalidUrl("port 0 is not a port")
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


@lru_cache(maxsize=1)
def _extractor() -> tldextract.TLDExtract:
    # The Public Suffix List snapshot shipped with the package: no download, no cache files.
    # Private suffixes count too, so `alice.github.io` is not `bob.github.io`.
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


@lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str | None:
    """`uk.reuters.com` -> `reuters.com`; `bbc.co.uk` stays; a bare public suffix -> None."""
    domain = _extractor()(host.strip().rstrip(".").lower()).top_domain_under_public_suffix
    return domain or None


def same_registrable_domain(first: str, second: str) -> bool:
    """Whether two hosts belong to one registrable domain under the Public Suffix List."""
    left = registrable_domain(first)
    return left is not None and left == registrable_domain(second)


def edition_host(host: str) -> str:
    """The host without its edition prefixes (`www.m.reuters.com` -> `reuters.com`), never
    shorter than its registrable domain (`m.co` stays)."""
    registrable = registrable_domain(host)
    while registrable is not None and host != registrable:
        prefix = next((p for p in EDITION_PREFIXES if host.startswith(p)), None)
        if prefix is None:
            break
        host = host[len(prefix) :]
    return host


def _normal_escape(match: re.Match[str]) -> str:
    # RFC 3986 6.2.2.2: an escaped unreserved character is that character; other escapes
    # compare with upper-case hex digits.
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _without_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, on a path whose escapes are already decoded where unreserved."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/..")) and bool(output)
    return "/" + "/".join(output) + ("/" if trailing else "")


def match_key(url: str) -> str:
    """The key on which takedown targets, blocks and ingest meet: the canonical URL without
    its scheme, with the edition host (no `www.`, `m.`, `amp.`), escapes normalised, dot
    segments resolved, repeated and trailing slashes dropped. `http://reuters.com/world/x/`
    and `https://www.reuters.com/world/./x` are both `reuters.com/world/x`. Raises
    InvalidUrl."""
    parts = urlsplit(normalise_url(url))
    host = edition_host(parts.hostname or "")
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    path = _PERCENT_ESCAPE.sub(_normal_escape, parts.path)
    path = re.sub(r"/{2,}", "/", _without_dot_segments(re.sub(r"/{2,}", "/", path)))
    path = path.rstrip("/") or "/"
    return netloc + path + (f"?{parts.query}" if parts.query else "")


def match_key_host(key: str) -> str:
    """The host part of a matching key (with its port, if any)."""
    return key.partition("/")[0]
