"""The block list: URLs (by matching key, so every spelling of one URL meets one block) and
domains that must not be republished.

Filled by takedowns once they take effect (confirmed, approved, or filed with a publisher
key; never at filing); read by article ingest, which refuses blocked URLs with 451. A block
names the takedown that holds it; when that request ends without removal (withdrawn,
rejected) the block passes to another request that still wants it, or is lifted. Lifting
every block of a removed article lets ingest publish it again."""

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import and_, bindparam, or_, select, update
from sqlmodel import Session, col

from app.articles.urls import domain_and_parents, source_domain
from app.dialects import dialect_of
from app.errors import Conflict, NotFound
from app.takedowns import audit
from app.takedowns.models import Block, Takedown, TakedownStatus, TakedownTarget, TargetKind

B = Block.__table__  # type: ignore[attr-defined]

# Requests whose blocks are in effect: queued ones (once filed or approved) and those that ran.
HOLDING_STATUSES = (TakedownStatus.queued, TakedownStatus.executing, TakedownStatus.completed)


# Built once: ingest asks this for every batch it stores.
_ACTIVE_BLOCKS_OF = select(Block).where(
    col(Block.lifted_at).is_(None),
    or_(
        and_(col(Block.kind) == "url", col(Block.value).in_(bindparam("keys", expanding=True))),
        and_(
            col(Block.kind) == "domain",
            col(Block.value).in_(bindparam("domains", expanding=True)),
        ),
    ),
)


def find_blocked(*, session: Session, match_keys: Mapping[str, str]) -> dict[str, Block]:
    """The active block, if any, for each canonical URL of {canonical URL: its matching key}
    (as prepare_article computed it): a block of its matching key, or of its host or a
    parent domain."""
    if not match_keys:
        return {}
    domains = {url: domain_and_parents(source_domain(url)) for url in match_keys}
    rows = session.scalars(
        _ACTIVE_BLOCKS_OF,
        {
            "keys": sorted(set(match_keys.values())),
            "domains": sorted({d for chain in domains.values() for d in chain}),
        },
    ).all()
    by_key = {block.value: block for block in rows if block.kind == "url"}
    by_domain = {block.value: block for block in rows if block.kind == "domain"}
    found: dict[str, Block] = {}
    for url, key in match_keys.items():
        block = by_key.get(key) or next(
            (by_domain[d] for d in domains[url] if d in by_domain), None
        )
        if block is not None:
            found[url] = block
    return found


def find_domain_blocks(*, session: Session, hosts: Iterable[str]) -> dict[str, Block]:
    """The active block, if any, of each of `hosts` or of a parent domain (a publisher that
    opted out), in one query: {host: block}; the oldest block when several hold."""
    parents = {host: domain_and_parents(host.removeprefix("www.")) for host in set(hosts) if host}
    domains = {domain for chain in parents.values() for domain in chain}
    if not domains:
        return {}
    by_domain: dict[str, Block] = {}
    for block in session.scalars(
        select(Block)
        .where(
            col(Block.lifted_at).is_(None),
            col(Block.kind) == "domain",
            col(Block.value).in_(domains),
        )
        .order_by(col(Block.id))
    ):
        by_domain.setdefault(block.value, block)
    found = {}
    for host, chain in parents.items():
        blocks = [by_domain[domain] for domain in chain if domain in by_domain]
        if blocks:
            found[host] = min(blocks, key=lambda block: block.id or 0)
    return found


def add_block(
    *, session: Session, kind: str, value: str, takedown_id: str | None, now: datetime
) -> tuple[Block, bool]:
    """Block a URL by its matching key (`url`) or a domain and its subdomains (`domain`).
    Idempotent and
    safe when two requests block one value at once; re-activates a lifted block. Returns the
    block and whether this call made it active."""
    insert = dialect_of(session).insert
    created = session.execute(
        insert(B)
        .values(kind=kind, value=value, takedown_id=takedown_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["kind", "value"])
        .returning(B.c.id)
    ).scalar()
    activated = created is not None
    if not activated:
        reactivated = session.execute(
            update(B)
            .where(B.c.kind == kind, B.c.value == value, B.c.lifted_at.is_not(None))
            .values(lifted_at=None, lifted_by=None, takedown_id=takedown_id, created_at=now)
        )
        activated = reactivated.rowcount == 1  # type: ignore[attr-defined]
    block = session.scalars(
        select(Block)
        .where(col(Block.kind) == kind, col(Block.value) == value)
        .execution_options(populate_existing=True)
    ).one()
    return block, activated


def block_takedown(
    *,
    session: Session,
    takedown_id: str,
    match_keys: Iterable[str],
    domain: str | None,
    actor: str,
    now: datetime,
) -> int:
    """Put a request's URLs (their matching keys) and domain on the block list (audited).
    Returns blocks made active."""
    values = [("url", key) for key in sorted(set(match_keys))]
    if domain is not None:
        values.append(("domain", domain))
    activated = 0
    for kind, value in values:
        block, active_now = add_block(
            session=session, kind=kind, value=value, takedown_id=takedown_id, now=now
        )
        if active_now:
            activated += 1
            audit.record(
                session=session,
                action=audit.Action.blocked,
                actor=actor,
                now=now,
                takedown_id=takedown_id,
                block_id=block.id,
                reason=f"{kind} {value}",
            )
    return activated


def _successor(session: Session, block: Block, ending: str) -> str | None:
    """Another request whose blocks are in effect and that names the same URL or domain."""
    if block.kind == "domain":
        query = select(col(Takedown.id)).where(col(Takedown.domain) == block.value)
    else:
        query = (
            select(col(Takedown.id))
            .join(TakedownTarget, col(TakedownTarget.takedown_id) == col(Takedown.id))
            .where(
                col(TakedownTarget.kind) != TargetKind.domain.value,
                col(TakedownTarget.match_key) == block.value,
            )
        )
    query = query.where(col(Takedown.id) != ending, col(Takedown.status).in_(HOLDING_STATUSES))
    return session.scalars(query.order_by(col(Takedown.received_at)).limit(1)).first()


def release_takedown_blocks(
    *, session: Session, takedown_id: str, actor: str, now: datetime
) -> int:
    """A request ended without removal: each block it holds passes to another request that
    still wants it, or is lifted (audited). Returns the blocks lifted."""
    held = session.scalars(
        select(Block).where(col(Block.takedown_id) == takedown_id, col(Block.lifted_at).is_(None))
    ).all()
    lifted = 0
    for block in held:
        successor = _successor(session, block, takedown_id)
        if successor is not None:
            block.takedown_id = successor
            audit.record(
                session=session,
                action=audit.Action.blocked,
                actor=actor,
                now=now,
                takedown_id=successor,
                block_id=block.id,
                reason=f"{block.kind} {block.value}: kept for this request after "
                f"request {takedown_id} ended",
            )
            continue
        block.lifted_at = now
        block.lifted_by = actor
        lifted += 1
        audit.record(
            session=session,
            action=audit.Action.block_lifted,
            actor=actor,
            now=now,
            takedown_id=takedown_id,
            block_id=block.id,
            reason=f"request {takedown_id} ended without removal",
        )
    session.flush()
    return lifted


def lift_block(
    *, session: Session, block_id: int, actor: str, reason: str | None, now: datetime
) -> Block:
    """An operator lifts a block (audited); 409 when it is lifted already. A removed article
    stays removed until it is ingested again with no block left on its URL or domain."""
    lifted = session.execute(
        update(B)
        .where(B.c.id == block_id, B.c.lifted_at.is_(None))
        .values(lifted_at=now, lifted_by=actor)
    )
    block = session.scalars(
        select(Block).where(col(Block.id) == block_id).execution_options(populate_existing=True)
    ).first()
    if block is None:
        raise NotFound(f"No block with id {block_id}.")
    if lifted.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"Block {block_id} was lifted already.")
    audit.record(
        session=session,
        action=audit.Action.block_lifted,
        actor=actor,
        now=now,
        takedown_id=block.takedown_id,
        block_id=block.id,
        reason=reason or "lifted by an operator",
    )
    return block


def list_blocks(
    *,
    session: Session,
    active: bool | None,
    kind: str | None,
    after_id: int | None,
    limit: int,
) -> list[Block]:
    """Blocks oldest first, keyset-paged on id."""
    query = select(Block)
    if active is not None:
        lifted = col(Block.lifted_at)
        query = query.where(lifted.is_(None) if active else lifted.is_not(None))
    if kind is not None:
        query = query.where(col(Block.kind) == kind)
    if after_id is not None:
        query = query.where(col(Block.id) > after_id)
    return list(session.scalars(query.order_by(col(Block.id)).limit(limit)))
