"""What a request names, resolved to our articles: ids, our public article URLs, original
source URLs (matched on their matching key, however the claimant spelled them) and whole
domains."""

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlmodel import Session, col

from app.articles import service as articles
from app.articles.service import ArticleFacts
from app.articles.urls import InvalidUrl, match_key, normalise_url, source_domain
from app.db import MAX_BIG_ROW_ID
from app.errors import FieldError, InvalidInput
from app.takedowns.models import TakedownTarget, TargetKind, TargetState

# Paths of our public article URLs, after BYLINE_PUBLIC_BASE_URL.
_ARTICLE_PATHS = (
    re.compile(r"^/v1/articles/(?P<id>[0-9]+)/?$"),
    re.compile(r"^/v1/articles/by-slug/(?P<slug>[A-Za-z0-9-]+)/?$"),
    re.compile(r"^/articles/(?:(?P<id>[0-9]+)|(?P<slug>[A-Za-z0-9-]+))/?$"),
)
# Article ids per query when resolving a domain, well under what one statement may bind.
_FACTS_SLICE = 5000


def _article_id(raw: int | str) -> int:
    article_id = int(raw)
    if not 1 <= article_id <= MAX_BIG_ROW_ID:
        raise ValueError("names no article of ours")
    return article_id


@dataclass(frozen=True)
class NamedTarget:
    """A target as parsed, before the database is asked: exactly one field is set."""

    article_id: int | None = None
    slug: str | None = None
    canonical_url: str | None = None


def parse_target(raw: int | str, public_base_url: str) -> NamedTarget:
    """Our article id, our public article URL, or an original URL. Raises ValueError."""
    if isinstance(raw, int) or (raw.isascii() and raw.isdigit()):
        return NamedTarget(article_id=_article_id(raw))
    try:
        canonical = normalise_url(raw)
    except InvalidUrl as exc:
        raise ValueError(f"must be an article id or an absolute http(s) URL: {exc}") from None
    ours = urlsplit(normalise_url(public_base_url))
    named = urlsplit(canonical)
    base_path = ours.path.rstrip("/")
    if named.netloc != ours.netloc or not (named.path + "/").startswith(base_path + "/"):
        return NamedTarget(canonical_url=canonical)
    path = named.path[len(base_path) :]
    for pattern in _ARTICLE_PATHS:
        match = pattern.match(path)
        if match:
            groups = match.groupdict()
            if groups.get("id"):
                return NamedTarget(article_id=_article_id(groups["id"]))
            return NamedTarget(slug=groups["slug"])
    raise ValueError("is one of our URLs but not an article's (use /v1/articles/{id})")


@dataclass(frozen=True)
class ResolvedTarget:
    """One target and one article it names (None: nothing we have, or a domain). A URL that
    several of our articles share a matching key with resolves to each of them."""

    position: int
    input: str
    kind: TargetKind
    canonical_url: str | None
    match_key: str | None
    article_id: int | None
    closest_article_id: int | None = None


@dataclass
class Resolution:
    """A request's targets resolved, with the facts policy needs of every article named."""

    targets: list[ResolvedTarget]
    facts: dict[int, ArticleFacts] = field(default_factory=dict)

    @property
    def live_facts(self) -> list[ArticleFacts]:
        return [f for f in self.facts.values() if f.removed_at is None]

    def named_count(self) -> int:
        """What the request would take down or block: live articles and unmatched URLs."""
        unmatched = {
            t.position for t in self.targets if t.kind == TargetKind.source_url and not t.article_id
        }
        return len(self.live_facts) + len(unmatched)

    def hosts(self) -> list[str]:
        """Every host the request names: its articles' sources, its unmatched URLs' hosts
        and the domain it asks for (what a claimant's mailbox must speak for)."""
        hosts = {fact.source_domain for fact in self.facts.values()}
        for target in self.targets:
            if target.kind == TargetKind.domain:
                hosts.add(target.input)
            elif target.article_id is None and target.canonical_url is not None:
                hosts.add(source_domain(target.canonical_url))
        return sorted(hosts)

    def identity(self) -> list[str]:
        """What the request asks for, independent of how it was spelled."""
        # An article is named by its matching key, so that its id, our URL for it and any
        # spelling of its original URL are one target, before and after we ingest it.
        return sorted(
            {
                f"domain:{target.input}"
                if target.kind == TargetKind.domain
                else f"url:{target.match_key}"
                for target in self.targets
            }
        )


def resolve_targets(
    *, session: Session, targets: Sequence[int | str], domain: str | None, public_base_url: str
) -> Resolution:
    """Resolve every target (422 naming each one we cannot read or that names an article of
    ours that does not exist) and the domain's live articles."""
    named: dict[int, NamedTarget] = {}
    errors = []
    for position, raw in enumerate(targets):
        try:
            named[position] = parse_target(raw, public_base_url)
        except ValueError as exc:
            errors.append(FieldError(field=f"targets.{position}", message=str(exc)))
    if errors:
        raise InvalidInput(errors)
    by_slug = articles.find_articles_by_slugs(
        session=session, slugs=[t.slug for t in named.values() if t.slug]
    )
    keys = {p: match_key(t.canonical_url) for p, t in named.items() if t.canonical_url}
    by_key = articles.find_articles_by_match_keys(session=session, keys=keys.values())
    ids: dict[int, list[int]] = {}
    for position, target in named.items():
        if target.slug is not None:
            by_slug_id = by_slug.get(target.slug)
            ids[position] = [by_slug_id] if by_slug_id is not None else []
        elif target.canonical_url is not None:
            ids[position] = by_key.get(keys[position], [])
        else:
            ids[position] = [target.article_id] if target.article_id is not None else []
    domain_ids = (
        articles.find_live_article_ids_in_domain(session=session, domain=domain) if domain else []
    )
    facts = _facts(session, [i for named_ids in ids.values() for i in named_ids] + domain_ids)
    resolved = []
    for position, target in named.items():
        found = [article_id for article_id in ids[position] if article_id in facts]
        raw = str(targets[position])
        if target.canonical_url is None:
            if not found:
                errors.append(
                    FieldError(field=f"targets.{position}", message="names no article of ours")
                )
                continue
            fact = facts[found[0]]
            resolved.append(
                ResolvedTarget(
                    position,
                    raw,
                    TargetKind.article_id,
                    fact.canonical_url,
                    match_key(fact.canonical_url),
                    fact.id,
                )
            )
            continue
        key = keys[position]
        if not found:
            closest = articles.closest_live_article(session=session, key=key)
            resolved.append(
                ResolvedTarget(
                    position, raw, TargetKind.source_url, target.canonical_url, key, None, closest
                )
            )
        resolved.extend(
            ResolvedTarget(
                position,
                raw,
                TargetKind.source_url,
                facts[article_id].canonical_url,
                key,
                article_id,
            )
            for article_id in found
        )
    if errors:
        raise InvalidInput(errors)
    if domain is not None:
        position = len(targets)
        resolved.append(ResolvedTarget(position, domain, TargetKind.domain, None, None, None))
        resolved.extend(
            ResolvedTarget(position, domain, TargetKind.domain, None, None, article_id)
            for article_id in domain_ids
        )
    return Resolution(targets=resolved, facts=facts)


def _facts(session: Session, article_ids: list[int]) -> dict[int, ArticleFacts]:
    facts: dict[int, ArticleFacts] = {}
    for start in range(0, len(article_ids), _FACTS_SLICE):
        slice_ = article_ids[start : start + _FACTS_SLICE]
        facts.update(articles.article_facts(session=session, article_ids=slice_))
    return facts


def target_rows(*, takedown_id: str, resolution: Resolution) -> list[TakedownTarget]:
    """Rows for a new request; articles removed before it are `removed` already."""
    return [
        TakedownTarget(
            takedown_id=takedown_id,
            position=target.position,
            input=target.input,
            kind=target.kind.value,
            canonical_url=target.canonical_url,
            match_key=target.match_key,
            article_id=target.article_id,
            closest_article_id=target.closest_article_id,
            state=(
                TargetState.removed
                if target.article_id is not None
                and resolution.facts[target.article_id].removed_at is not None
                else TargetState.pending
            ).value,
        )
        for target in resolution.targets
    ]


def targets_of(*, session: Session, takedown_id: str) -> list[TakedownTarget]:
    return targets_of_all(session=session, takedown_ids=[takedown_id]).get(takedown_id, [])


def targets_of_all(
    *, session: Session, takedown_ids: Collection[str]
) -> dict[str, list[TakedownTarget]]:
    """`targets_of` for several requests in one read."""
    rows: dict[str, list[TakedownTarget]] = {}
    for row in session.scalars(
        select(TakedownTarget)
        .where(col(TakedownTarget.takedown_id).in_(list(takedown_ids)))
        .order_by(col(TakedownTarget.position), col(TakedownTarget.id))
    ):
        rows.setdefault(row.takedown_id, []).append(row)
    return rows


@dataclass(frozen=True)
class ClosestArticle:
    article_id: int
    source_url: str


@dataclass(frozen=True)
class TargetView:
    """A target as the claimant named it: the articles it resolved to, where it stands, and
    for a URL that matched none of our articles the one we hold nearest to it."""

    input: str
    kind: TargetKind
    article_ids: list[int]
    state: TargetState
    closest: ClosestArticle | None = None

    @property
    def matched(self) -> bool:
        return bool(self.article_ids)


# A target with several articles (a domain) stands where its least advanced article stands.
_STATE_ORDER = (TargetState.pending, TargetState.cancelled, TargetState.removed)


def target_views(
    rows: Sequence[TakedownTarget], closest: dict[int, ClosestArticle] | None = None
) -> list[TargetView]:
    """Rows grouped back into the targets the claimant named; `closest` holds the articles
    nearest to unmatched URLs, by id."""
    closest = closest or {}
    by_position: dict[int, list[TakedownTarget]] = {}
    for row in rows:
        by_position.setdefault(row.position, []).append(row)
    views = []
    for position in sorted(by_position):
        group = by_position[position]
        with_article = [row for row in group if row.article_id is not None]
        states = {TargetState(row.state) for row in (with_article or group)}
        state = next((s for s in _STATE_ORDER if s in states), TargetState.blocked)
        views.append(
            TargetView(
                input=group[0].input,
                kind=TargetKind(group[0].kind),
                article_ids=sorted({row.article_id for row in with_article if row.article_id}),
                state=state,
                closest=None
                if with_article or group[0].closest_article_id is None
                else closest.get(group[0].closest_article_id),
            )
        )
    return views


def views_of(*, session: Session, takedown_id: str) -> list[TargetView]:
    """The targets of a request as the claimant named them, with the live articles nearest
    to those that matched nothing."""
    return views_from(session=session, rows=targets_of(session=session, takedown_id=takedown_id))


def views_from(*, session: Session, rows: Sequence[TakedownTarget]) -> list[TargetView]:
    """`views_of` for target rows read already."""
    nearest = {row.closest_article_id for row in rows if row.closest_article_id is not None}
    facts = articles.article_facts(session=session, article_ids=nearest)
    closest = {
        article_id: ClosestArticle(article_id, fact.canonical_url)
        for article_id, fact in facts.items()
        if fact.removed_at is None
    }
    return target_views(rows, closest)


def unmatched_details(views: Sequence[TargetView]) -> list[dict[str, str | None]]:
    """The URLs that matched none of our articles, each with the original of the live article
    nearest to it: what the claimant's e-mails say about them."""
    return [
        {"input": view.input, "closest": view.closest.source_url if view.closest else None}
        for view in views
        if view.kind == TargetKind.source_url and not view.matched
    ]
