"""What `bench/load.py` checks after the run, against the database and the live API."""

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, exists, func, select

from app.articles.models import Article, ArticleTombstone
from app.scheduler.models import RemovalJob
from app.takedowns.models import OPEN_STATUSES, AuditEvent, Block, Takedown, TakedownTarget

A = Article.__table__  # type: ignore[attr-defined]
J = RemovalJob.__table__  # type: ignore[attr-defined]
T = Takedown.__table__  # type: ignore[attr-defined]
E = AuditEvent.__table__  # type: ignore[attr-defined]
targets_table = TakedownTarget.__table__  # type: ignore[attr-defined]
blocks_table = Block.__table__  # type: ignore[attr-defined]
tombstones_table = ArticleTombstone.__table__  # type: ignore[attr-defined]
# The scheduler escalates an unconfirmed request on its first tick after the window ends.
SWEEP_GRACE = timedelta(seconds=3)
CHUNK = 5000


@dataclass
class Verification:
    """Each check: how many things it looked at, and what was wrong (empty: all good)."""

    checked: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, check: str, count: int, problems: list[str]) -> None:
        self.checked[check] = count
        self.problems[check] = problems[:20] + (
            [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        )

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


def acknowledged_ingests_are_stored(
    engine: Engine, acknowledged: dict[str, int], result: Verification
) -> None:
    """Every ingest answered 200/201 (or created/updated/unchanged in a batch) is in the
    database under the id it was answered with, live or as a removal's tombstone."""
    problems = []
    items = list(acknowledged.items())
    with engine.connect() as connection:
        for start in range(0, len(items), CHUNK):
            chunk = dict(items[start : start + CHUNK])
            rows = {
                row.id: row.source_url
                for row in connection.execute(
                    select(A.c.id, A.c.source_url).where(A.c.id.in_(set(chunk.values())))
                )
            }
            for url, article_id in chunk.items():
                if rows.get(article_id) != url:
                    problems.append(f"{url} (id {article_id}) is not stored")
    result.add("acknowledged ingests stored", len(items), problems)


def due_removals_are_done(engine: Engine, at: datetime, result: Verification) -> int:
    """Every removal row due by `at` is done and its article removed. The rows checked."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(J.c.id, J.c.status, A.c.id.label("article"), A.c.removed_at)
            .join(A, A.c.id == J.c.article_id)
            .where(J.c.run_at <= at)
        ).all()
    problems = [
        f"removal {row.id} ({row.status}) of article {row.article}: removed_at {row.removed_at}"
        for row in rows
        if row.status != "done" or row.removed_at is None
    ]
    result.add("due removals done", len(rows), problems)
    return len(rows)


def removed_articles_answer_451(base_url: str, engine: Engine, result: Verification) -> None:
    """Every removed article answers 451 now (the run's watcher checked each as it went)."""
    with engine.connect() as connection:
        removed = list(connection.scalars(select(A.c.id).where(A.c.removed_at.is_not(None))))
    problems = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for article_id in removed:
            status = client.get(f"/v1/articles/{article_id}").status_code
            if status != 451:
                problems.append(f"article {article_id} answers {status}")
    result.add("removed articles answer 451", len(removed), problems)


def _requests(engine: Engine, ids: Iterable[str]) -> dict[str, Any]:
    """The filed requests by id: status, receipt, confirmation."""
    wanted = sorted(set(ids))
    found: dict[str, Any] = {}
    with engine.connect() as connection:
        for start in range(0, len(wanted), CHUNK):
            for row in connection.execute(
                select(T.c.id, T.c.status, T.c.received_at, T.c.email_confirmed_at).where(
                    T.c.id.in_(wanted[start : start + CHUNK])
                )
            ):
                found[row.id] = row
    return found


def _named_articles(engine: Engine) -> dict[str, set[int]]:
    """takedown id -> the articles its targets resolved to."""
    named: dict[str, set[int]] = defaultdict(set)
    with engine.connect() as connection:
        for row in connection.execute(
            select(targets_table.c.takedown_id, targets_table.c.article_id).where(
                targets_table.c.article_id.is_not(None)
            )
        ):
            named[row.takedown_id].add(row.article_id)
    return named


def confirmations_are_recorded(
    engine: Engine, filed: list[str], confirmations: Mapping[str, int], result: Verification
) -> set[str]:
    """A request is confirmed in the database exactly when its claimant's confirmation was
    answered 200 (nobody else can confirm it). The confirmed ids."""
    rows = _requests(engine, filed)
    problems = [f"filed request {i} is not stored" for i in filed if i not in rows]
    confirmed = set()
    for takedown_id, row in rows.items():
        answered = confirmations.get(takedown_id) == 200
        if row.email_confirmed_at is not None:
            confirmed.add(takedown_id)
        if answered != (row.email_confirmed_at is not None):
            problems.append(
                f"request {takedown_id}: confirmation answered {confirmations.get(takedown_id)},"
                f" email_confirmed_at {row.email_confirmed_at}"
            )
    result.add("confirmations answered 200 are exactly those recorded", len(filed), problems)
    return confirmed


def confirmed_requests_removed_their_articles(
    engine: Engine, confirmed: set[str], result: Verification
) -> None:
    """Every confirmed request is completed (its removals have all come due: the run waits
    past the review window) and every article it named is removed."""
    rows = _requests(engine, confirmed)
    named = _named_articles(engine)
    articles = sorted({a for i in confirmed for a in named.get(i, set())})
    with engine.connect() as connection:
        removed = {
            row.id: row.removed_at
            for start in range(0, len(articles), CHUNK)
            for row in connection.execute(
                select(A.c.id, A.c.removed_at).where(A.c.id.in_(articles[start : start + CHUNK]))
            )
        }
    problems = []
    for takedown_id in sorted(confirmed):
        if rows[takedown_id].status != "completed":
            problems.append(f"confirmed request {takedown_id} is {rows[takedown_id].status}")
        for article_id in sorted(named.get(takedown_id, set())):
            if removed.get(article_id) is None:
                problems.append(f"article {article_id} of confirmed {takedown_id} is not removed")
    result.add("confirmed requests completed, their articles removed", len(confirmed), problems)


def unconfirmed_requests_removed_nothing(
    engine: Engine,
    filed: list[str],
    confirmed: set[str],
    *,
    review_window: timedelta,
    at: datetime,
    result: Verification,
) -> None:
    """A request never confirmed removed nothing, blocked nothing and ran nothing; once its
    review window has ended it is with an operator (escalated). Every removed article was
    removed by a confirmed request, and an article named only by unconfirmed requests is
    live."""
    unconfirmed = sorted(set(filed) - confirmed)
    rows = _requests(engine, unconfirmed)
    named = _named_articles(engine)
    problems = []
    for takedown_id in unconfirmed:
        row = rows[takedown_id]
        ended = row.received_at + review_window
        allowed = (
            {"escalated"}
            if ended + SWEEP_GRACE <= at
            else {"received"}
            if ended > at
            else {"received", "escalated"}
        )
        if row.status not in allowed:
            problems.append(f"unconfirmed request {takedown_id} is {row.status}")
    with engine.connect() as connection:
        for start in range(0, len(unconfirmed), CHUNK):
            chunk = unconfirmed[start : start + CHUNK]
            for row in connection.execute(
                select(J.c.takedown_id, J.c.article_id, J.c.status, J.c.run_at).where(
                    J.c.takedown_id.in_(chunk),
                    (J.c.status != "queued") | J.c.run_at.is_not(None),
                )
            ):
                problems.append(
                    f"unconfirmed {row.takedown_id}: removal of {row.article_id} is {row.status}"
                    f" (run_at {row.run_at})"
                )
            for row in connection.execute(
                select(E.c.takedown_id, E.c.action).where(
                    E.c.takedown_id.in_(chunk), E.c.action.in_(["removed", "blocked", "queued"])
                )
            ):
                problems.append(f"unconfirmed {row.takedown_id} has a `{row.action}` audit row")
            for row in connection.execute(
                select(blocks_table.c.takedown_id, blocks_table.c.value).where(
                    blocks_table.c.takedown_id.in_(chunk)
                )
            ):
                problems.append(f"unconfirmed {row.takedown_id} holds a block of {row.value}")
        removed: dict[int, str | None] = dict(
            connection.execute(
                select(A.c.id, A.c.removed_by_takedown_id).where(A.c.removed_at.is_not(None))
            ).all()
        )
    for article_id, remover in sorted(removed.items()):
        if remover not in confirmed:
            problems.append(f"article {article_id} was removed by unconfirmed {remover}")
    wanted_by_confirmed = {a for i in confirmed for a in named.get(i, set())}
    only_unconfirmed = {a for i in unconfirmed for a in named.get(i, set())} - wanted_by_confirmed
    problems += [
        f"article {a}, named only by unconfirmed requests, is removed"
        for a in sorted(only_unconfirmed & removed.keys())
    ]
    result.add(
        "never-confirmed requests removed, blocked and ran nothing",
        len(unconfirmed),
        problems,
    )


def _outcomes(rows: list[Any]) -> dict[str, int]:
    statuses = Counter(row.status for row in rows)
    completed = [row for row in rows if row.status == "completed"]
    return {
        "received": len(rows),
        "completed": statuses["completed"],
        "removed_content": sum(bool(row.removed_content) for row in completed),
        "removed_nothing": sum(not row.removed_content for row in completed),
        "rejected": statuses["rejected"],
        "withdrawn": statuses["withdrawn"],
        "escalated": sum(bool(row.escalated) for row in rows),
        "open": sum(statuses[status] for status in OPEN_STATUSES),
    }


def _database_figures(engine: Engine) -> dict[str, Any]:
    """The transparency counts, computed here straight from the tables."""
    ever_escalated = exists().where(E.c.takedown_id == T.c.id, E.c.action == "escalated")
    # Removed content: a tombstone of this request (computed apart from the report's audit
    # rows on purpose).
    removed_content = exists().where(tombstones_table.c.takedown_id == T.c.id)
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                T.c.status,
                T.c.reason,
                ((T.c.status == "escalated") | ever_escalated).label("escalated"),
                removed_content.label("removed_content"),
            )
        ).all()
    by_reason: dict[str, list[Any]] = {}
    for row in rows:
        by_reason.setdefault(row.reason, []).append(row)
    return {
        "totals": _outcomes(list(rows)),
        "by_reason": {reason: _outcomes(group) for reason, group in by_reason.items()},
    }


def transparency_matches_the_database(
    base_url: str, engine: Engine, result: Verification
) -> dict[str, Any]:
    """The counts of /v1/transparency equal the counts in the tables (read before and after
    the request, so that a removal finishing in between cannot go unnoticed)."""
    before = _database_figures(engine)
    report = httpx.get(f"{base_url}/v1/transparency", timeout=30).json()
    after = _database_figures(engine)
    served = {
        "totals": report["totals"],
        "by_reason": {
            entry["reason"]: {key: value for key, value in entry.items() if key != "reason"}
            for entry in report["by_reason"]
            if entry["received"]
        },
    }
    problems = []
    if before != after:
        problems.append("the database changed while the report was read; run again")
    elif served != before:
        problems.append(f"/v1/transparency {served} != database {before}")
    result.add("transparency counts equal the database", before["totals"]["received"], problems)
    return report


def count_removed(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count()).select_from(A).where(A.c.removed_at.is_not(None))
            )
            or 0
        )
