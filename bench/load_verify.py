"""What `bench/load.py` checks after the run, against the database and the live API."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine, exists, func, select

from app.articles.models import Article
from app.scheduler.models import RemovalJob
from app.takedowns.models import OPEN_STATUSES, AuditEvent, Takedown

A = Article.__table__  # type: ignore[attr-defined]
J = RemovalJob.__table__  # type: ignore[attr-defined]
T = Takedown.__table__  # type: ignore[attr-defined]
E = AuditEvent.__table__  # type: ignore[attr-defined]
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


def _outcomes(rows: list[Any]) -> dict[str, int]:
    statuses = Counter(row.status for row in rows)
    return {
        "received": len(rows),
        "completed": statuses["completed"],
        "rejected": statuses["rejected"],
        "withdrawn": statuses["withdrawn"],
        "escalated": sum(bool(row.escalated) for row in rows),
        "open": sum(statuses[status] for status in OPEN_STATUSES),
    }


def _database_figures(engine: Engine) -> dict[str, Any]:
    """The transparency counts, computed here straight from the tables."""
    ever_escalated = exists().where(E.c.takedown_id == T.c.id, E.c.action == "escalated")
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                T.c.status,
                T.c.reason,
                ((T.c.status == "escalated") | ever_escalated).label("escalated"),
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
