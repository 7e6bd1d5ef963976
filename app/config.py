"""Settings read from the environment (prefix BYLINE_), validated once at start."""

import ipaddress
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TAKEDOWN_DEADLINE = timedelta(hours=24)
# The review window must leave operators and the scheduler room before the deadline.
MIN_SLACK_BEFORE_DEADLINE = timedelta(hours=1)

_RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class Rate:
    """A limit such as `30/hour`: at most `count` events per `period_seconds`."""

    def __init__(self, count: int, period_seconds: int) -> None:
        self.count = count
        self.period_seconds = period_seconds

    @classmethod
    def parse(cls, text: str) -> "Rate":
        match = _RATE_PATTERN.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError("expected N/second|minute|hour|day with N >= 1, e.g. 30/hour")
        return cls(int(match.group(1)), _RATE_PERIODS[match.group(2)])

    def __repr__(self) -> str:
        return f"Rate({self.count}/{self.period_seconds}s)"


@dataclass(frozen=True)
class SmtpUrl:
    """Where claimant e-mail goes. `smtp://user:pass@host:587` sends with STARTTLS (required);
    `smtps://user:pass@host:465` with implicit TLS; `smtp://host:25?starttls=off` in clear, to
    a relay on a trusted network (no credentials then)."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


def parse_smtp_url(text: str) -> SmtpUrl:
    """Parse BYLINE_SMTP_URL; errors never repeat the URL (it may hold a password)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL such as smtp://user:pass@host:587") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must be smtp://[user:pass@]host[:port] or smtps://...")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("takes no path: smtp://[user:pass@]host[:port][?starttls=off]")
    options = dict(part.partition("=")[::2] for part in parts.query.split("&") if part)
    if set(options) - {"starttls"} or options.get("starttls", "on") not in ("on", "off"):
        raise ValueError("the only option is ?starttls=off (for smtp://)")
    implicit_tls = parts.scheme == "smtps"
    starttls = not implicit_tls and options.get("starttls", "on") == "on"
    if implicit_tls and "starttls" in options:
        raise ValueError("smtps:// uses TLS from the start; ?starttls does not apply")
    username = unquote(parts.username) if parts.username else None
    if username and not (implicit_tls or starttls):
        raise ValueError("refuses to send a password in clear: drop ?starttls=off")
    return SmtpUrl(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 587),
        implicit_tls=implicit_tls,
        starttls=starttls,
        username=username,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True)
class Nameserver:
    """A DNS server to ask: an IP address and a port."""

    address: str
    port: int


def parse_nameservers(text: str) -> list[Nameserver]:
    """`127.0.0.1:5353, 192.0.2.53, [2001:db8::53]:53` -> nameservers (port 53 by default)."""
    servers = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = re.match(
            r"^\[(?P<v6>[^\]]+)\](?::(?P<v6port>\d+))?$|^(?P<v4>[^:]+)(?::(?P<port>\d+))?$", item
        )
        if match is None:
            match = re.match(r"^(?P<bare>[0-9A-Fa-f:]+)$", item)
            if match is None:
                raise ValueError(f"{item!r} is not an address such as 127.0.0.1:5353")
        groups = match.groupdict()
        address = groups.get("v6") or groups.get("v4") or groups.get("bare") or ""
        port = int(groups.get("v6port") or groups.get("port") or 53)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address such as 127.0.0.1:5353") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{item!r} has a port outside 1-65535")
        servers.append(Nameserver(address, port))
    return servers


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BYLINE_", extra="ignore")

    database_url: str = "sqlite:///./byline.db"
    public_base_url: str = "http://localhost:8000"
    scheduler: Literal["embedded", "off"] = "embedded"
    scheduler_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    scheduler_batch_size: int = Field(default=50, ge=1, le=1000)
    scheduler_lease_seconds: float = Field(default=60.0, gt=0)
    scheduler_max_attempts: int = Field(default=5, ge=1, le=100)
    # Removal rows one worker claims and carries out in one transaction (on SQLite, API
    # writes wait for the batch in hand).
    removal_batch_size: int = Field(default=200, ge=1, le=1000)
    cors_origins: str = ""
    # Proxies whose X-Forwarded-For is believed (the client address keys the rate limits).
    forwarded_allow_ips: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(default=500, ge=1, le=10_000)
    # The reads by key (an article by id, by slug) through the fast path (app/fastpath);
    # false serves the same answers through plain FastAPI routes on a session.
    fast_reads: bool = True
    # A request that has not begun its answer by then gets a 503 (app/timeouts.py).
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A client must send a request's line and headers within this (slowloris defence).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    takedown_review_window: timedelta = timedelta(hours=4)
    # More targets than this in one request from a mailbox (articles and URLs named) are
    # never carried out without an operator; a publisher key may name up to the second.
    takedown_max_auto_targets: int = Field(default=25, ge=1)
    takedown_max_publisher_targets: int = Field(default=1000, ge=1)
    # Filings per client address and per targeted domain; confirmations per mailbox.
    takedown_rate_per_address: str = "30/hour"
    takedown_rate_per_domain: str = "60/hour"
    takedown_rate_per_email: str = "10/hour"
    # Publishers' domain verifications started per client address; checks per verification.
    verification_rate_per_address: str = "10/hour"
    verification_check_rate: str = "60/hour"
    # An operator decides a rejected claimant's appeal within this many days of its filing.
    appeal_review_days: int = Field(default=7, ge=1, le=365)
    # A verified publisher's TXT record may be missing this long before its key lapses.
    publisher_record_grace: timedelta = timedelta(days=7)
    # DNS servers for publishers' TXT records (`host[:port]`, comma-separated); unset: the
    # system's resolver.
    dns_nameservers: str = ""
    dns_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Signs the CSRF tokens of every form post: the rights holders' pages and the operators'
    # console. Every API process must share it; unset, one is generated once and kept in the
    # database (app/web/csrf.py), never an empty or guessable key.
    csrf_secret: SecretStr | None = None
    # E-mail to claimants: unset, e-mails are recorded in the outbox as `skipped`, not sent.
    smtp_url: SecretStr | None = None
    smtp_from: str | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # With BYLINE_SMTP_URL unset, e-mails are written here as .eml files instead.
    mail_dir: Path = Path("./byline-mail")
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Deliveries are retried (with backoff) for this long; an endpoint that has failed for
    # this long without one success is disabled.
    notification_retry_window: timedelta = timedelta(hours=24)
    # Feeds and webhooks may reach loopback, private, link-local and other internal addresses
    # (intranet feeds, tests). Off, such URLs are refused when registered and at every
    # connection, on the address actually connected to.
    allow_private_networks: bool = False
    # A feed's body is cut off past this many bytes (counted while it streams in).
    feeds_max_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    # The shortest interval between two fetches of a feed (ISO 8601 duration, e.g. PT5M).
    feeds_min_interval: timedelta = Field(default=timedelta(minutes=5), gt=timedelta(0))
    feeds_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    # Fetches in flight to one host at a time, per worker.
    feeds_per_host: int = Field(default=2, ge=1, le=32)

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http(s) URL such as https://news.example")
        return value.rstrip("/")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _split_origins(value):
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"{origin!r} is not an origin such as https://news.example")
        return value

    @field_validator(
        "takedown_rate_per_address",
        "takedown_rate_per_domain",
        "takedown_rate_per_email",
        "verification_rate_per_address",
        "verification_check_rate",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        Rate.parse(value)
        return value

    @field_validator("dns_nameservers")
    @classmethod
    def _nameservers(cls, value: str) -> str:
        parse_nameservers(value)
        return value

    @field_validator("publisher_record_grace")
    @classmethod
    def _positive_grace(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration such as P7D")
        return value

    @field_validator("csrf_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters, e.g. `openssl rand -hex 32`")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # Raises with a message that never repeats the URL (it may hold a password).
            parse_smtp_url(value.get_secret_value())
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None:
            _name, address = parseaddr(value)
            if "@" not in address or any(c in value for c in "\r\n"):
                raise ValueError("must be an address such as 'byline <noreply@news.example>'")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _review_window_inside_deadline(self) -> "Settings":
        if self.takedown_review_window < timedelta(0):
            raise ValueError("BYLINE_TAKEDOWN_REVIEW_WINDOW must not be negative")
        if self.takedown_review_window > TAKEDOWN_DEADLINE - MIN_SLACK_BEFORE_DEADLINE:
            raise ValueError(
                "BYLINE_TAKEDOWN_REVIEW_WINDOW must leave at least 1 hour before the 24-hour "
                "deadline (at most 23:00:00)"
            )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return _split_origins(self.cors_origins)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def rate_per_address(self) -> Rate:
        return Rate.parse(self.takedown_rate_per_address)

    @property
    def rate_per_domain(self) -> Rate:
        return Rate.parse(self.takedown_rate_per_domain)

    @property
    def rate_per_email(self) -> Rate:
        return Rate.parse(self.takedown_rate_per_email)

    @property
    def rate_per_verification_address(self) -> Rate:
        return Rate.parse(self.verification_rate_per_address)

    @property
    def rate_per_verification_check(self) -> Rate:
        return Rate.parse(self.verification_check_rate)

    @property
    def nameservers(self) -> list[Nameserver]:
        """BYLINE_DNS_NAMESERVERS parsed; empty: the system's resolver."""
        return parse_nameservers(self.dns_nameservers)

    @property
    def smtp(self) -> SmtpUrl | None:
        """The parsed BYLINE_SMTP_URL; None: e-mail is recorded but not sent."""
        return parse_smtp_url(self.smtp_url.get_secret_value()) if self.smtp_url else None

    @property
    def email_sender(self) -> str:
        """The From of claimant e-mails: BYLINE_SMTP_FROM, or noreply@ our public host."""
        host = urlsplit(self.public_base_url).hostname or "localhost"
        return self.smtp_from or f"byline <noreply@{host}>"


def _split_origins(value: str) -> list[str]:
    return [origin.strip() for origin in value.split(",") if origin.strip()]


class SettingsError(Exception):
    """A setting has a bad value; the message names it in one line."""


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "BYLINE_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {name}: {message}") from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()


def settings_or_exit() -> Settings:
    """Settings for a process entry point: a bad value prints one line and exits 2."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"byline: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
