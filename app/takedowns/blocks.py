"""The block list: canonical URLs and domains that must not be republished.

Filled by takedowns; read by article ingest, which refuses blocked URLs with 451."""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlmodel import Session, col

from app.articles.urls import domain_and_parents, source_domain
from app.takedowns.models import Block


def blocking_rules(canonical_urls: Iterable[str]) -> tuple[set[str], set[str]]:
    """What would block these URLs: (the URLs themselves, their hosts and parent domains)."""
    urls = set(canonical_urls)
    domains = {d for url in urls for d in domain_and_parents(source_domain(url))}
    return urls, domains


def find_blocked(*, session: Session, canonical_urls: Iterable[str]) -> dict[str, Block]:
    """The active block, if any, for each of the given canonical URLs."""
    urls, domains = blocking_rules(canonical_urls)
    if not urls:
        return {}
    rows = session.scalars(
        select(Block).where(
            col(Block.lifted_at).is_(None),
            or_(
                and_(col(Block.kind) == "url", col(Block.value).in_(urls)),
                and_(col(Block.kind) == "domain", col(Block.value).in_(domains)),
            ),
        )
    ).all()
    by_url = {block.value: block for block in rows if block.kind == "url"}
    by_domain = {block.value: block for block in rows if block.kind == "domain"}
    found: dict[str, Block] = {}
    for url in urls:
        block = by_url.get(url) or next(
            (by_domain[d] for d in domain_and_parents(source_domain(url)) if d in by_domain), None
        )
        if block is not None:
            found[url] = block
    return found


def add_block(
    *, session: Session, kind: str, value: str, takedown_id: str | None, now: datetime
) -> Block:
    """Block a canonical URL (`url`) or a domain and its subdomains (`domain`); idempotent,
    and re-activates a block that was lifted."""
    block = session.scalars(
        select(Block).where(col(Block.kind) == kind, col(Block.value) == value)
    ).first()
    if block is None:
        block = Block(kind=kind, value=value, takedown_id=takedown_id, created_at=now)
        session.add(block)
    elif block.lifted_at is not None:
        block.lifted_at = None
        block.lifted_by = None
        block.takedown_id = takedown_id
        block.created_at = now
    session.flush()
    return block
