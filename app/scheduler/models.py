"""The removal queue: one row per article to remove."""

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String, UniqueConstraint
from sqlmodel import Field

from app.db import BIG_ROW_ID, UTCDateTime
from app.jobs.models import JobColumns


class RemovalJob(JobColumns, table=True):
    __tablename__ = "removal_jobs"
    __table_args__ = (
        UniqueConstraint("takedown_id", "article_id"),
        # Claims scan due rows earliest deadline first.
        Index("ix_removal_jobs_status_deadline_at", "status", "deadline_at"),
        # A worker's wait ends at the next run time of a queued row.
        Index("ix_removal_jobs_status_run_at", "status", "run_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    takedown_id: str = Field(
        sa_column=Column(String(36), ForeignKey("takedowns.id"), nullable=False, index=True)
    )
    article_id: int = Field(sa_column=Column(BIG_ROW_ID, ForeignKey("articles.id"), nullable=False))
    deadline_at: datetime = Field(sa_type=UTCDateTime)
