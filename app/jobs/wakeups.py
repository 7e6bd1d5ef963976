"""Wake-ups: work that becomes due now starts now, not at the next interval.

A transaction that makes work due calls `wake(session, kind)`. When it commits:

- the workers of this process that run that kind are woken at once (an in-process event:
  the embedded workers of `byline serve`, every `byline worker`, on either engine);
- where this process has none (an API process with BYLINE_SCHEDULER=off, on PostgreSQL), a
  `NOTIFY byline_jobs, '<kind>'` sent in that same transaction reaches every other process,
  whose `NotificationListener` wakes its workers. PostgreSQL delivers it only if the
  transaction commits, and only after it has: a woken worker always sees the work.

A rolled-back transaction wakes nobody. The worker's interval stays as the fallback: a
listener whose connection is lost wakes its workers (something may have been missed), then
reconnects with backoff while they poll.
"""

import logging
import threading
from collections.abc import Collection, Iterable

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from app.dialects import dialect_of

logger = logging.getLogger("byline.jobs")

CHANNEL = "byline_jobs"
_KINDS_TO_WAKE = "byline_kinds_to_wake"
LISTENER_POLL_SECONDS = 1.0
LISTENER_RETRY_CAP_SECONDS = 30.0


class WakeUp:
    """What one worker waits on between ticks: rung by due work of its kinds, or a stop."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = frozenset(kinds)
        self._event = threading.Event()

    def ring(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        """Until rung (True) or `timeout` seconds (False)."""
        return self._event.wait(timeout)


class WakeSignals:
    """This process's waiting workers, by the kinds they run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[WakeUp] = set()

    def subscribe(self, wake_up: WakeUp) -> None:
        with self._lock:
            self._waiting.add(wake_up)

    def unsubscribe(self, wake_up: WakeUp) -> None:
        with self._lock:
            self._waiting.discard(wake_up)

    def serves(self, kind: str) -> bool:
        """Whether a worker of this process runs `kind`."""
        with self._lock:
            return any(kind in wake_up.kinds for wake_up in self._waiting)

    def wake(self, kinds: Iterable[str]) -> None:
        kinds = set(kinds)
        with self._lock:
            woken = [wake_up for wake_up in self._waiting if wake_up.kinds & kinds]
        for wake_up in woken:
            wake_up.ring()

    def wake_all(self) -> None:
        with self._lock:
            woken = list(self._waiting)
        for wake_up in woken:
            wake_up.ring()


SIGNALS = WakeSignals()


def wake(session: Session, kind: str) -> None:
    """Wake the workers of `kind` once this transaction commits: it made work due now.

    When a worker of this process runs `kind`, it is woken in-process and no NOTIFY is
    sent: PostgreSQL serializes the commits of every transaction that sent one (a
    database-wide lock held through the commit's WAL flush), which took four workers
    completing takedowns from 857 to 450 removals a second (bench/README.md)."""
    kinds: set[str] = session.info.setdefault(_KINDS_TO_WAKE, set())
    if kind in kinds:
        return
    kinds.add(kind)
    if not SIGNALS.serves(kind):
        dialect_of(session).notify(session, CHANNEL, kind)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    kinds = session.info.pop(_KINDS_TO_WAKE, None)
    if kinds:
        SIGNALS.wake(kinds)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_KINDS_TO_WAKE, None)


class StopSignal(threading.Event):
    """A stop event that also wakes this process's workers, so they stop at once rather
    than at the end of their wait."""

    def set(self) -> None:
        super().set()
        SIGNALS.wake_all()


class NotificationListener:
    """`LISTEN byline_jobs` on a connection of its own, in a thread: each notification wakes
    this process's workers of its kind. For PostgreSQL only (SQLite's workers share the
    process of every writer)."""

    def __init__(self, engine: Engine, signals: WakeSignals = SIGNALS) -> None:
        url = engine.url.set(drivername="postgresql")
        self.conninfo = url.render_as_string(hide_password=False)
        self.signals = signals
        self.stop_event = threading.Event()
        self.listening = threading.Event()  # set while LISTEN holds
        self.thread = threading.Thread(target=self._run, name="byline-listener", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self.stop_event.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                self._listen()
                failures = 0
            except psycopg.Error as exc:
                self.listening.clear()
                failures += 1
                retry = min(2.0 ** (failures - 1), LISTENER_RETRY_CAP_SECONDS)
                logger.warning(
                    "job wake-ups lost (%s); workers poll at their interval, reconnecting in "
                    "%.0f s",
                    type(exc).__name__,
                    retry,
                )
                # Whatever was notified while the connection was down was missed.
                self.signals.wake_all()
                self.stop_event.wait(retry)

    def _listen(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            # Work may have been made due before LISTEN held.
            self.signals.wake_all()
            while not self.stop_event.is_set():
                for notification in connection.notifies(timeout=LISTENER_POLL_SECONDS):
                    self.signals.wake([notification.payload])
                    if self.stop_event.is_set():
                        break


def listeners_for(engine: Engine, kinds: Collection[str]) -> list[NotificationListener]:
    """The listener a process running workers of `kinds` needs on this engine (none on
    SQLite)."""
    if not kinds or not dialect_of(engine).notifies_other_processes:
        return []
    return [NotificationListener(engine)]
