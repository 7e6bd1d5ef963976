"""Canonical URLs: one article, however a crawler spells its link."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.articles.urls import InvalidUrl, normalise_url, source_domain


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
