"""Operators watch the removal queue: failed rows never disappear silently."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from app.auth import AdminKey
from app.clock import RequestNow
from app.db import MAX_BIG_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.jobs.models import JobStatus
from app.scheduler.models import RemovalJob
from app.scheduler.queue import list_removals, retry_failed_removal

router = APIRouter(
    prefix="/v1/admin/removals", tags=["admin"], responses=problem_responses(401, 403)
)


class RemovalJobPublic(BaseModel):
    id: int
    takedown_id: str
    article_id: int
    status: JobStatus
    run_at: datetime | None
    deadline_at: datetime
    attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: RemovalJob | Any) -> "RemovalJobPublic":
        return cls.model_validate(job, from_attributes=True)


class RemovalJobsPublic(BaseModel):
    items: list[RemovalJobPublic]
    next_after: int | None


@router.get("", response_model=RemovalJobsPublic, responses=problem_responses(422))
def list_removal_jobs(
    session: ReadSessionDep,
    _: AdminKey,
    status: JobStatus | None = None,
    takedown_id: Annotated[str | None, Query(max_length=36)] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_BIG_ROW_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RemovalJobsPublic:
    """List removal rows (e.g. `?status=failed`), oldest first; page on with `after`."""
    jobs = list_removals(
        session=session, status=status, takedown_id=takedown_id, after_id=after, limit=limit
    )
    next_after = jobs[-1].id if len(jobs) == limit else None
    return RemovalJobsPublic(
        items=[RemovalJobPublic.of(job) for job in jobs], next_after=next_after
    )


@router.post(
    "/{job_id}/retry", response_model=RemovalJobPublic, responses=problem_responses(404, 409)
)
def retry_removal_job(
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    principal: AdminKey,
    job_id: Annotated[int, Path(ge=1, le=MAX_BIG_ROW_ID)],
) -> RemovalJobPublic:
    """Queue a failed removal row again, due now, with its attempts reset (audited)."""
    job = retry_failed_removal(session=session, job_id=job_id, actor=principal.name, now=now)
    return RemovalJobPublic.of(job)
