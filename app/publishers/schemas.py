"""What a publisher sends to prove a domain, and what it is shown."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.publishers.models import PublisherVerification, VerificationStatus
from app.publishers.service import record_name, status_at
from app.takedowns.schemas import Domain, Email


class VerificationIn(BaseModel):
    """The domain to prove, and where notices about it go."""

    model_config = ConfigDict(extra="forbid")

    domain: Domain = Field(
        description="The domain to prove (its registrable domain is kept: `uk.reuters.com` "
        "proves `reuters.com`)."
    )
    email: Email = Field(
        description="Where we write about the verification (verified, record missing, key "
        "revoked). Seen by our staff only; it proves nothing."
    )


class VerificationPublic(BaseModel):
    """A domain verification: the TXT record to publish, and where it stands."""

    id: str
    domain: str
    status: VerificationStatus
    record_name: str = Field(description="Where to publish the TXT record.")
    record_value: str = Field(description="The TXT record's value, exactly.")
    created_at: datetime
    expires_at: datetime = Field(description="Unverified by then, the verification expires.")
    verified_at: datetime | None
    last_checked_at: datetime | None
    last_check_error: str | None = Field(
        description="Why the last check did not verify: `no record: ...` (the DNS answered "
        "without it) or `lookup failed: ...` (the DNS did not answer)."
    )
    record_missing_since: datetime | None = Field(
        description="A verified domain whose record our daily check no longer sees: since when."
    )
    lapsed_at: datetime | None

    @classmethod
    def of(cls, verification: PublisherVerification, now: datetime) -> "VerificationPublic":
        return cls(
            id=verification.id,
            domain=verification.domain,
            status=status_at(verification, now),
            record_name=record_name(verification.domain),
            record_value=verification.record_value,
            created_at=verification.created_at,
            expires_at=verification.expires_at,
            verified_at=verification.verified_at,
            last_checked_at=verification.last_checked_at,
            last_check_error=verification.last_check_error,
            record_missing_since=verification.record_missing_since,
            lapsed_at=verification.lapsed_at,
        )


class VerificationChecked(VerificationPublic):
    """A check's answer: the publisher key only in the answer of the check that verified."""

    publisher_key: str | None = Field(
        description="`byl_...`: shown in this answer only (we keep its hash). Send it as "
        "`Authorization: Bearer` to file takedowns of this domain and to list its articles."
    )
