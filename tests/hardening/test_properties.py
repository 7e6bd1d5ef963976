"""Properties of URL identity and cursors over wider inputs than tests/articles draws: any
printable text in paths and queries, tracking parameters in any case, and cursors tampered
with at the HTTP level on every paged list."""

from urllib.parse import quote, unquote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from app.articles.urls import TRACKING_PARAMETERS, InvalidUrl, normalise_url
from tests.articles.factories import ingest
from tests.takedowns.factories import file_confirmed, filing

BASE = "https://news.example.com"
_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs"), blacklist_characters="/?#&="),
    min_size=1,
    max_size=8,
)
_paths = st.lists(_text, max_size=4).map(lambda segments: "/" + "/".join(segments))
_params = st.lists(st.tuples(_text, _text), max_size=4)
_tracking_names = st.one_of(
    st.sampled_from(sorted(TRACKING_PARAMETERS)),
    st.builds("{}{}".format, st.sampled_from(["utm_", "pk_", "mtm_", "hsa_"]), _text),
).flatmap(
    lambda name: st.sampled_from([name, name.upper(), name.capitalize()])  # any case
)
_tracking = st.lists(st.tuples(_tracking_names, _text), min_size=1, max_size=3)
WIDE = settings(max_examples=300, deadline=None)


def _url(path: str, params: list[tuple[str, str]]) -> str:
    query = "&".join(f"{quote(name)}={quote(value)}" for name, value in params)
    return BASE + path + (f"?{query}" if query else "")


def _canonical(url: str) -> str | None:
    try:
        return normalise_url(url)
    except InvalidUrl:
        return None


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(("utm_", "pk_", "mtm_", "hsa_"))


@WIDE
@given(_paths, _params)
def test_normalising_any_printable_url_is_idempotent(
    path: str, params: list[tuple[str, str]]
) -> None:
    once = _canonical(_url(path, params))
    if once is not None:
        assert normalise_url(once) == once


@WIDE
@given(_paths, _params, _tracking, st.randoms(use_true_random=False))
def test_tracking_parameters_in_any_case_and_place_never_change_identity(
    path: str, params: list[tuple[str, str]], tracking: list[tuple[str, str]], random: object
) -> None:
    kept = [(name, value) for name, value in params if not _is_tracking(name)]
    mixed = kept + tracking
    random.shuffle(mixed)  # type: ignore[attr-defined]
    assert _canonical(_url(path, mixed)) == _canonical(_url(path, kept))


@WIDE
@given(_paths, _paths)
def test_paths_that_differ_once_decoded_never_collide(first: str, second: str) -> None:
    # "/é" and "/%C3%A9" are one resource (RFC 3986 equivalence): only decoded paths count.
    canonical = (_canonical(BASE + first), _canonical(BASE + second))
    if None not in canonical and unquote(first) != unquote(second):
        assert canonical[0] != canonical[1]


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_LISTS = [
    ("/v1/articles", {}),
    ("/v1/articles", {"q": "flood"}),
    ("/v1/admin/audit", {}),
    ("/v1/admin/takedowns", {}),
    ("/v1/admin/blocks", {}),
]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_any_tampered_cursor_is_a_400_problem_on_every_list(
    client: TestClient,
    engine: Engine,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    data: st.DataObject,
) -> None:
    path, params = data.draw(st.sampled_from(_LISTS))
    # A cursor this API issued, for the list drawn (sealed per list: a listing cursor on a
    # search, or an audit cursor on blocks, is tampering too).
    issued = _issued_cursors(client, engine, ingest_headers, admin_headers)
    cursor = data.draw(st.sampled_from(issued))
    index = data.draw(st.integers(min_value=0, max_value=len(cursor) - 1))
    tampered = cursor[:index] + data.draw(st.sampled_from(_ALPHABET)) + cursor[index + 1 :]
    assume(tampered != cursor)
    response = client.get(path, params={**params, "cursor": tampered}, headers=admin_headers)
    if response.status_code == 200:
        # Only a cursor that is still the one issued for this list may page on: base64 has
        # spare bits in its last character, so a change there can decode to the same bytes.
        assert index == len(cursor) - 1, (path, cursor, tampered)
        return
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/bad-cursor")


_CURSORS: dict[int, list[str]] = {}


def _issued_cursors(
    client: TestClient,
    engine: Engine,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> list[str]:
    """Real cursors of every paged list, made once per test (the database lives that long)."""
    key = id(client)
    if key not in _CURSORS:
        for n in range(3):
            ingest(client, ingest_headers, n)
            # Confirmed by a mailbox at the domain, so that its URL is blocked at once (and
            # the blocks list has pages).
            file_confirmed(
                client,
                engine,
                filing(
                    [f"https://www.reuters.com/world/{n}"],
                    claimant={"email": f"legal{n}@reuters.com"},
                ),
            )
        cursors = []
        for path, params in _LISTS:
            page = client.get(path, params={**params, "limit": 1}, headers=admin_headers)
            if page.json().get("next_cursor"):
                cursors.append(page.json()["next_cursor"])
        assert len(cursors) == len(_LISTS), cursors
        _CURSORS.clear()
        _CURSORS[key] = cursors
    return _CURSORS[key]
