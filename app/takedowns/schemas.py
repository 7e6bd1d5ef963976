"""What rights holders send and see, and what operators see."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from app.articles.sanitise import plain_text
from app.articles.schemas import HttpUrl, UtcDatetime
from app.articles.urls import registrable_domain
from app.db import MAX_BIG_ROW_ID
from app.takedowns.mailboxes import InvalidAddress, address_domain, is_disposable, normalise_address
from app.takedowns.models import (
    AppealOutcome,
    AuditEvent,
    Block,
    Reason,
    Takedown,
    TakedownAppeal,
    TakedownStatus,
    TargetState,
)
from app.takedowns.policy import Proof
from app.takedowns.targets import TargetView

MAX_TARGETS = 100
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _host_name(value: str) -> str | None:
    """A lower-case ASCII host name of at least two labels, or None."""
    host = value.strip().rstrip(".").lower()
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    return host


def _email(value: str) -> str:
    # Messages never repeat the value: e-mail addresses are personal data.
    try:
        address = normalise_address(value)
    except InvalidAddress as exc:
        raise ValueError(str(exc)) from None
    if is_disposable(address_domain(address)):
        raise ValueError(
            "is a disposable address; use a mailbox you keep, so that we can confirm it"
        )
    return address


def _domain(value: str) -> str:
    host = _host_name(value)
    if host is None:
        raise ValueError("must be a domain name such as example.com (no scheme, no path)")
    host = host.removeprefix("www.")
    if registrable_domain(host) is None:
        raise ValueError("is a public suffix shared by many owners; name your own domain")
    return host


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    value = plain_text(value)
    if not value:
        raise ValueError("must contain text")
    return value


def _target(value: object) -> int | str:
    # One validator rather than a union, so that an error names `targets.N`, nothing more.
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_BIG_ROW_ID:
            raise ValueError("an article id is a positive integer")
        return value
    if not isinstance(value, str):
        raise ValueError("must be an article id or a URL")
    value = value.strip()
    if not value or len(value) > 2048 or "\x00" in value:
        raise ValueError("must be an article id or a URL of at most 2048 characters")
    return value


def _stated(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true: the request cannot be filed without this statement")
    return value


# Documented: at least one character that is not a space (markup is stripped as well).
_HAS_TEXT = Field(json_schema_extra={"minLength": 1, "pattern": r"\S"})
PersonText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_text), _HAS_TEXT]
LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_text), _HAS_TEXT]
# The JSON schemas say what the validators accept, so that clients (and the fuzzer) can tell.
Email = Annotated[
    str,
    StringConstraints(max_length=320),
    AfterValidator(_email),
    Field(json_schema_extra={"format": "email"}),
]
Domain = Annotated[
    str,
    StringConstraints(max_length=255),
    AfterValidator(_domain),
    Field(json_schema_extra={"format": "hostname"}),
]
Statement = Annotated[
    bool, AfterValidator(_stated), WithJsonSchema({"type": "boolean", "const": True})
]
Target = Annotated[
    int | str,
    BeforeValidator(_target),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_BIG_ROW_ID},
                {"type": "string", "format": "http-url", "minLength": 1, "maxLength": 2048},
            ]
        }
    ),
]


class ClaimantIn(BaseModel):
    """Who asks. Personal data: shown to operators only."""

    model_config = ConfigDict(extra="forbid")

    name: PersonText
    email: Email
    organization: PersonText | None = None
    role: Literal["owner", "agent"]
    acting_for: PersonText | None = Field(
        default=None, description="Required for agents: the rights holder they act for."
    )

    @model_validator(mode="after")
    def _agent_names_principal(self) -> "ClaimantIn":
        if self.role == "agent" and self.acting_for is None:
            raise ValueError("acting_for is required when role is agent")
        return self


class TakedownIn(BaseModel):
    """A takedown request. Targets are our article ids, our public article URLs, or original
    source URLs; `domain` asks to stop republishing a whole publisher domain."""

    model_config = ConfigDict(extra="forbid")

    claimant: ClaimantIn
    reason: Reason
    targets: list[Target] = Field(default_factory=list, max_length=MAX_TARGETS)
    domain: Domain | None = None
    original_url: HttpUrl | None = Field(
        default=None, description="Where the claimant's original was published."
    )
    original_published_at: UtcDatetime | None = Field(
        default=None, description="When the original was published, as the claimant states."
    )
    explanation: LongText
    good_faith: Statement = Field(
        description="I believe in good faith that the use is not authorised."
    )
    accurate: Statement = Field(description="The information in this request is accurate.")
    signature: PersonText

    @model_validator(mode="after")
    def _names_something(self) -> "TakedownIn":
        if not self.targets and self.domain is None:
            raise ValueError(f"name 1 to {MAX_TARGETS} targets, or a domain")
        if self.original_published_at is not None and self.original_url is None:
            raise ValueError("original_published_at needs the original_url it dates")
        return self


class ClosestArticle(BaseModel):
    article_id: int
    source_url: str = Field(description="The original's address, as we hold it.")


class TargetPublic(BaseModel):
    input: str = Field(description="The target as the claimant named it.")
    article_ids: list[int]
    matched: bool = Field(description="Whether the target names any article we hold.")
    closest: ClosestArticle | None = Field(
        description="For a URL that matched none of our articles: the live article we hold "
        "nearest to it on the same host, in case the address was mistyped."
    )
    state: TargetState

    @classmethod
    def of(cls, view: TargetView) -> "TargetPublic":
        closest = (
            ClosestArticle(article_id=view.closest.article_id, source_url=view.closest.source_url)
            if view.closest is not None
            else None
        )
        return cls(
            input=view.input,
            article_ids=view.article_ids,
            matched=view.matched,
            closest=closest,
            state=view.state,
        )


class TakedownFiled(BaseModel):
    """The answer to a filing. `status_token` is shown once. Nothing is removed or blocked
    until the claimant confirms the address by the link we e-mailed (`confirmation`), unless
    a publisher key filed it."""

    id: str
    status: TakedownStatus
    received_at: datetime
    due_at: datetime
    status_token: str = Field(description="The secret to follow or withdraw the request.")
    status_url: str
    confirmation: Literal["emailed", "not_needed"] = Field(
        description="`emailed`: a link to confirm the address went to the claimant's e-mail; "
        "`not_needed`: a publisher key filed the request."
    )
    targets: list[TargetPublic]


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="The code of the confirmation link we e-mailed (`?code=...`)."
    )


class DecisionPublic(BaseModel):
    outcome: Literal["approved", "rejected"]
    statement_of_reasons: str | None
    decided_at: datetime

    @classmethod
    def of(cls, takedown: Takedown) -> "DecisionPublic | None":
        if takedown.decision not in ("approved", "rejected") or takedown.decided_at is None:
            return None
        return cls(
            outcome=takedown.decision,
            statement_of_reasons=takedown.decision_reason,
            decided_at=takedown.decided_at,
        )


def proof_of(takedown: Takedown) -> Proof:
    """What vouches for a request now."""
    if takedown.publisher_key_id is not None:
        return Proof.publisher
    if takedown.email_confirmed_at is not None:
        return Proof.mailbox
    if takedown.confirmation_hash is None:
        return Proof.legacy
    return Proof.unconfirmed


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    statement: LongText = Field(
        description="Why the rejection was wrong: read by an operator other than the one who "
        "rejected the request."
    )


class AppealPublic(BaseModel):
    """The claimant's appeal and, once decided, its outcome."""

    statement: str
    filed_at: datetime
    due_at: datetime = Field(description="An operator decides the appeal by then.")
    outcome: AppealOutcome | None = Field(
        description="`upheld` (the rejection stands) or `granted` (the request is approved); "
        "null until decided."
    )
    statement_of_reasons: str | None
    decided_at: datetime | None

    @classmethod
    def of(cls, appeal: TakedownAppeal | None) -> "AppealPublic | None":
        if appeal is None:
            return None
        return cls(
            statement=appeal.statement,
            filed_at=appeal.filed_at,
            due_at=appeal.due_at,
            outcome=AppealOutcome(appeal.outcome) if appeal.outcome else None,
            statement_of_reasons=appeal.decision_reason,
            decided_at=appeal.decided_at,
        )


class AppealAdmin(AppealPublic):
    rejected_by: str = Field(
        description="The operator who rejected the request: not the one who may decide the appeal."
    )
    decided_by: str | None

    @classmethod
    def of(cls, appeal: TakedownAppeal | None) -> "AppealAdmin | None":
        public = AppealPublic.of(appeal)
        if appeal is None or public is None:
            return None
        return cls(
            **public.model_dump(), rejected_by=appeal.rejected_by, decided_by=appeal.decided_by
        )


class TakedownPublic(BaseModel):
    """What the claimant sees with the token (or the confirmation code): never anyone's
    personal data."""

    id: str
    status: TakedownStatus
    reason: Reason
    domain: str | None
    proof: Proof = Field(
        description="What vouches for the request: `unconfirmed` until the claimant presses "
        "the e-mailed link, then `confirmed_mailbox`; `publisher` when a publisher key filed "
        "it; `legacy` for requests filed before confirmation existed."
    )
    email_confirmed_at: datetime | None
    received_at: datetime
    due_at: datetime
    run_at: datetime | None = Field(description="When the removals run, once that is decided.")
    completed_at: datetime | None
    decision: DecisionPublic | None
    appeal: AppealPublic | None = Field(
        default=None, description="The claimant's appeal of a rejection, if there is one."
    )
    targets: list[TargetPublic]

    @classmethod
    def of(
        cls,
        takedown: Takedown,
        targets: list[TargetView],
        appeal: TakedownAppeal | None = None,
    ) -> "TakedownPublic":
        return cls(
            id=takedown.id,
            status=TakedownStatus(takedown.status),
            reason=Reason(takedown.reason),
            domain=takedown.domain,
            proof=proof_of(takedown),
            email_confirmed_at=takedown.email_confirmed_at,
            received_at=takedown.received_at,
            due_at=takedown.due_at,
            run_at=takedown.run_at,
            completed_at=takedown.completed_at,
            decision=DecisionPublic.of(takedown),
            appeal=AppealPublic.of(appeal),
            targets=[TargetPublic.of(view) for view in targets],
        )


class ClaimantPublic(BaseModel):
    name: str
    email: str
    organization: str | None
    role: str
    acting_for: str | None

    @classmethod
    def of(cls, takedown: Takedown) -> "ClaimantPublic":
        return cls(
            name=takedown.claimant_name,
            email=takedown.claimant_email,
            organization=takedown.claimant_organization,
            role=takedown.claimant_role,
            acting_for=takedown.claimant_acting_for,
        )


class TakedownSummary(BaseModel):
    id: str
    status: TakedownStatus
    reason: Reason
    claimant: ClaimantPublic
    proof: Proof
    email_confirmed_at: datetime | None
    publisher_key_id: int | None
    duplicate_of: str | None = Field(
        description="An earlier request with the same mailbox and targets (never shown to "
        "the claimant)."
    )
    domain: str | None
    received_at: datetime
    due_at: datetime
    run_at: datetime | None
    completed_at: datetime | None
    overdue: bool = Field(description="Still open after due_at.")
    breached_at: datetime | None
    escalation_reasons: list[str] = Field(
        description="Why the request waits (or waited) for an operator, one entry per reason."
    )

    @classmethod
    def of(cls, takedown: Takedown, *, overdue: bool) -> "TakedownSummary":
        return cls(**_summary_fields(takedown, overdue))


def _summary_fields(takedown: Takedown, overdue: bool) -> dict[str, Any]:
    return {
        "id": takedown.id,
        "status": TakedownStatus(takedown.status),
        "reason": Reason(takedown.reason),
        "claimant": ClaimantPublic.of(takedown),
        "proof": proof_of(takedown),
        "email_confirmed_at": takedown.email_confirmed_at,
        "publisher_key_id": takedown.publisher_key_id,
        "duplicate_of": takedown.duplicate_of,
        "domain": takedown.domain,
        "received_at": takedown.received_at,
        "due_at": takedown.due_at,
        "run_at": takedown.run_at,
        "completed_at": takedown.completed_at,
        "overdue": overdue,
        "breached_at": takedown.breached_at,
        "escalation_reasons": takedown.escalation_reasons or [],
    }


class TakedownAdmin(TakedownSummary):
    explanation: str
    signature: str
    original_url: str | None
    original_published_at: datetime | None
    decision: DecisionPublic | None
    decided_by: str | None
    appeal: AppealAdmin | None
    open_removals: int = Field(description="Removal rows still queued or running.")
    targets: list[TargetPublic]

    @classmethod
    def detail(
        cls,
        takedown: Takedown,
        *,
        overdue: bool,
        open_removals: int,
        targets: list[TargetView],
        appeal: TakedownAppeal | None,
    ) -> "TakedownAdmin":
        return cls(
            **_summary_fields(takedown, overdue),
            explanation=takedown.explanation,
            signature=takedown.signature,
            original_url=takedown.original_url,
            original_published_at=takedown.original_published_at,
            decision=DecisionPublic.of(takedown),
            decided_by=takedown.decided_by,
            appeal=AppealAdmin.of(appeal),
            open_removals=open_removals,
            targets=[TargetPublic.of(view) for view in targets],
        )


class TakedownsAdmin(BaseModel):
    items: list[TakedownSummary]
    next_cursor: str | None


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: LongText = Field(description="The statement of reasons, shown to the claimant.")


class EscalateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: LongText | None = None


class UpholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: LongText = Field(
        description="Why the rejection stands: the statement of reasons e-mailed to the claimant."
    )


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: LongText | None = Field(default=None, description="A note, e-mailed to the claimant.")


class AuditEventPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    takedown_id: str | None
    article_id: int | None
    block_id: int | None
    verification_id: str | None
    feed_id: int | None = None
    from_status: str | None
    to_status: str | None
    reason: str | None

    @classmethod
    def of(cls, event: AuditEvent) -> "AuditEventPublic":
        return cls.model_validate(event, from_attributes=True)


class AuditEventsPublic(BaseModel):
    items: list[AuditEventPublic]
    next_cursor: str | None


class BlockPublic(BaseModel):
    id: int
    kind: Literal["url", "domain"]
    value: str
    takedown_id: str | None
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @classmethod
    def of(cls, block: Block) -> "BlockPublic":
        return cls.model_validate(block, from_attributes=True)


class BlocksPublic(BaseModel):
    items: list[BlockPublic]
    next_cursor: str | None
