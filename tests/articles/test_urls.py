"""Canonical URLs: one article, however a crawler spells its link."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.articles.urls import InvalidUrl, edition_host, match_key, normalise_url, source_domain


@pytest.mark.parametrize(
    ("given_url", "canonical"),
    [
        ("HTTPS://WWW.Reuters.COM:443/World/Story", "https://www.reuters.com/World/Story"),
        ("http://example.com:80/a#comments", "http://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        (
            "https://example.com/a?utm_source=tw&utm_medium=x&fbclid=1&gclid=2&mc_cid=3&mc_eid=4&ref=5&id=7",
            "https://example.com/a?id=7",
        ),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("  https://example.com/a  ", "https://example.com/a"),
    ],
)
def test_canonical_form(given_url: str, canonical: str) -> None:
    assert normalise_url(given_url) == canonical


@pytest.mark.parametrize(
    "hostile",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/relative/path",
        "ftp://example.com/file",
        "https://user:pass@example.com/",
        "https://exa mple.com/",
        "https://example.com/\x00",
        "http://",
        "https://example.com:99999/",
        "https://" + "a" * 3000 + ".com/",
    ],
)
def test_hostile_or_relative_urls_are_refused(hostile: str) -> None:
    with pytest.raises(InvalidUrl):
        normalise_url(hostile)


def test_source_domain_drops_www_only() -> None:
    assert source_domain("https://www.reuters.com/a") == "reuters.com"
    assert source_domain("https://uk.reuters.com/a") == "uk.reuters.com"


_segment = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.~", min_size=1, max_size=12
)
_paths = st.lists(_segment, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
_params = st.lists(st.tuples(_segment, _segment), max_size=4)
_tracking = st.lists(
    st.tuples(
        st.sampled_from(["utm_source", "utm_campaign", "fbclid", "gclid", "mc_eid", "ref"]),
        _segment,
    ),
    max_size=3,
)


def _url(path: str, params: list[tuple[str, str]]) -> str:
    query = "&".join(f"{k}={v}" for k, v in params)
    return f"https://news.example.com{path}" + (f"?{query}" if query else "")


@given(_paths, _params)
def test_normalising_is_idempotent(path: str, params: list[tuple[str, str]]) -> None:
    once = normalise_url(_url(path, params))
    assert normalise_url(once) == once


@given(_paths, _params, _tracking)
def test_tracking_parameters_never_change_identity(
    path: str, params: list[tuple[str, str]], tracking: list[tuple[str, str]]
) -> None:
    clean = [
        (k, v)
        for k, v in params
        if not k.lower().startswith("utm_")
        and k.lower() not in {"ref", "fbclid", "gclid", "mc_eid"}
    ]
    assert normalise_url(_url(path, clean + tracking)) == normalise_url(_url(path, clean))


@given(_paths, _paths)
def test_different_paths_never_collide(first: str, second: str) -> None:
    assume(first != second)
    assert normalise_url(_url(first, [])) != normalise_url(_url(second, []))


@pytest.mark.parametrize(
    "spelling",
    [
        "https://www.reuters.com/world/x-1",
        "http://reuters.com/world/x-1/",
        "https://reuters.com/world/./x-1",
        "https://reuters.com/world/a/../x-1",
        "https://reuters.com//world///x-1",
        "https://reuters.com/world/x%2D1",
        "https://reuters.com/world/%78-1",
        "https://amp.reuters.com/world/x-1",
        "https://m.reuters.com/world/x-1?utm_source=twitter#comments",
        "https://www.m.reuters.com:443/world/x-1",
    ],
)
def test_every_spelling_of_one_url_has_one_matching_key(spelling: str) -> None:
    assert match_key(spelling) == "reuters.com/world/x-1"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://reuters.com/world/x-1", "https://reuters.com/World/x-1"),  # paths keep case
        ("https://reuters.com/world/x-1", "https://uk.reuters.com/world/x-1"),  # other host
        ("https://reuters.com/a%2Fb", "https://reuters.com/a/b"),  # an escaped slash is data
        ("https://reuters.com/x?id=1", "https://reuters.com/x?id=2"),
        ("https://reuters.com/x", "https://reuters.com:8443/x"),
    ],
)
def test_different_urls_keep_different_matching_keys(first: str, second: str) -> None:
    assert match_key(first) != match_key(second)


def test_edition_prefixes_never_strip_a_registrable_domain() -> None:
    assert edition_host("www.m.reuters.com") == "reuters.com"
    assert edition_host("m.co") == "m.co"
    assert edition_host("www.co.uk") == "www.co.uk"
    assert edition_host("amp.bbc.co.uk") == "bbc.co.uk"


@given(_paths, _params)
def test_a_matching_key_is_its_own_matching_key(path: str, params: list[tuple[str, str]]) -> None:
    key = match_key(_url(path, params))
    assert match_key("https://" + key) == key
