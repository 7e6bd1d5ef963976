"""The columns every job row has, whatever its kind."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, Text
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime


class JobStatus(StrEnum):
    queued = "queued"  # waiting for its run time (none: held until something schedules it)
    running = "running"  # leased to a worker until lease_expires_at
    done = "done"
    failed = "failed"  # out of attempts (or of time): an operator's turn
    cancelled = "cancelled"  # no longer wanted


OPEN_STATUSES = (JobStatus.queued.value, JobStatus.running.value)


class JobColumns(SQLModel):
    """Mixed into each kind's table: when the row runs, who holds it, how its tries went."""

    status: str = Field(default=JobStatus.queued.value, sa_type=String(12))
    run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Tries made: counted when a row is claimed, given back when a claim is released unrun.
    attempts: int = Field(default=0)
    lease_owner: str | None = Field(default=None, sa_type=String(100))
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
