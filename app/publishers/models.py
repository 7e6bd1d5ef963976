"""Tables of the publishers domain."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime
from app.jobs.models import JobColumns


class VerificationStatus(StrEnum):
    pending = "pending"  # the TXT record has not been seen yet
    verified = "verified"  # seen; the publisher key is active
    lapsed = "lapsed"  # the record was gone for the grace period: the key is revoked
    expired = "expired"  # never seen before expires_at


class PublisherVerification(SQLModel, table=True):
    """One attempt to prove a domain. `email` is personal data: where notices about the
    verification go (operators only). The record value is public by nature (it is in DNS)."""

    __tablename__ = "publisher_verifications"

    id: str = Field(sa_type=String(36), primary_key=True)
    domain: str = Field(sa_type=String(255))  # the registrable domain
    email: str = Field(sa_type=String(320))
    record_value: str = Field(sa_type=String(100))
    status: str = Field(sa_type=String(12))  # VerificationStatus
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_check_error: str | None = Field(default=None, sa_type=Text)
    # Set by the first re-check that does not see the record; cleared when it is seen again.
    record_missing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lapsed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    api_key_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("api_keys.id"), nullable=True)
    )


class PublisherRecheck(JobColumns, table=True):
    """The daily re-check of a verified domain's TXT record: one job row per verification,
    queued again for the next day each time it runs, done once the verification lapses."""

    __tablename__ = "publisher_rechecks"
    __table_args__ = (Index("ix_publisher_rechecks_status_run_at", "status", "run_at"),)

    id: int | None = Field(default=None, primary_key=True)
    verification_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("publisher_verifications.id"), nullable=False, unique=True
        )
    )
