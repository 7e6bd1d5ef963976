"""Job rows for the mechanism's own tests. The queue is generic; its tests use the lightest
real kind, the publishers' re-checks (one foreign key, to a verification), and a handler
that only records what it ran."""

import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from app.db import new_session, writer
from app.jobs.models import JobStatus
from app.jobs.queue import RetryPolicy
from app.jobs.worker import JobHandler, JobRun
from app.publishers.models import PublisherVerification
from app.publishers.rechecks import RECHECKS
from app.publishers.service import PR, PV
from tests.factories import Bind, reading, writing

QUEUE = RECHECKS


def add_jobs(
    bind: Bind, count: int, *, run_at: datetime | None, now: datetime, **values: Any
) -> list[int]:
    """`count` queued rows due at `run_at` (None: held); their ids in order."""
    ids: list[int] = []
    with writing(bind) as session:
        for _ in range(count):
            verification_id = str(uuid.uuid4())
            session.add(
                PublisherVerification(
                    id=verification_id,
                    domain=f"{verification_id[:8]}.example.com",
                    email="dns@example.com",
                    record_value="byline-verify=x",
                    status="verified",
                    created_at=now,
                    expires_at=now + timedelta(days=7),
                )
            )
            session.flush()
            job_id = session.execute(
                insert(PR)
                .values(
                    verification_id=verification_id,
                    status=JobStatus.queued.value,
                    run_at=run_at,
                    attempts=0,
                    created_at=now,
                    **values,
                )
                .returning(PR.c.id)
            ).scalar_one()
            ids.append(job_id)
    return ids


def job(bind: Bind, job_id: int) -> Any:
    with reading(bind) as session:
        return session.execute(select(PR).where(PR.c.id == job_id)).one()


def statuses(bind: Bind) -> dict[int, str]:
    with reading(bind) as session:
        return {row.id: row.status for row in session.execute(select(PR.c.id, PR.c.status))}


class RecordingHandler(JobHandler):
    """Runs claimed rows by marking them done, remembering what it ran; `fail_ids` fail."""

    queue = QUEUE
    policy = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=5), max_attempts=3)

    def __init__(self, fail_ids: Sequence[int] = ()) -> None:
        self.ran: list[int] = []
        self.fail_ids = set(fail_ids)
        self.ran_event = threading.Event()

    def run(self, batch: Sequence[Any], job: JobRun) -> None:
        for row in batch:
            now = job.moment()
            with new_session(writer(job.engine)) as session, session.begin():
                if row.id in self.fail_ids:
                    QUEUE.fail(session=session, job_id=row.id, owner=job.owner, error="boom",
                               now=now, policy=self.policy)  # fmt: skip
                    job.count("retried")
                    continue
                QUEUE.finish(session=session, ids=[row.id], owner=job.owner, now=now)
            self.ran.append(row.id)
            job.count("done")
        self.ran_event.set()


__all__ = ["PV", "QUEUE", "RecordingHandler", "add_jobs", "job", "statuses"]
