"""The removal queue: one row per article to remove."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class RemovalJob(SQLModel, table=True):
    __tablename__ = "removal_jobs"
    __table_args__ = (
        UniqueConstraint("takedown_id", "article_id"),
        # Claims scan due rows earliest deadline first.
        Index("ix_removal_jobs_status_deadline_at", "status", "deadline_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    takedown_id: str = Field(
        sa_column=Column(String(36), ForeignKey("takedowns.id"), nullable=False, index=True)
    )
    article_id: int = Field(sa_column=Column(Integer, ForeignKey("articles.id"), nullable=False))
    status: str = Field(sa_type=String(12))
    run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deadline_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    lease_owner: str | None = Field(default=None, sa_type=String(100))
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
