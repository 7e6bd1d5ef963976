"""The one source of "now". Rules take `now` as an argument; tests move a FrozenClock."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol

from fastapi import Depends, Request


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment


def request_now(request: Request) -> datetime:
    """The moment a request is handled, by the app's clock (one per request)."""
    now: datetime = request.app.state.clock.now()
    return now


RequestNow = Annotated[datetime, Depends(request_now)]
