"""Tables of the operators' console."""

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, String
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime


class ConsoleSession(SQLModel, table=True):
    """An operator signed in with an admin key. The browser holds a random token; only its
    SHA-256 is stored, so a copy of this table signs nobody in."""

    __tablename__ = "console_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_type=String(64), unique=True)
    api_key_id: int = Field(
        sa_column=Column(Integer, ForeignKey("api_keys.id"), nullable=False, index=True)
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
