"""Plain-function factories: articles ingested through the real API, takedown filings, and
the removals the scheduler would carry out."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, select

from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session, writer
from app.jobs.worker import TickResult
from app.notifications.models import ClaimantEmail, EmailKind
from app.takedowns.models import AuditEvent, Takedown, TakedownTarget
from app.takedowns.service import carry_out_removal
from tests.articles.factories import article_payload, ingest_all
from tests.articles.factories import ingest as ingest_article
from tests.factories import Bind, reading
from tests.workers import run_removals

PROBLEM = "application/problem+json"
CLAIMANT_NAME = "Priya Claimant-Secret"
CLAIMANT_EMAIL = "legal@reuters.com"
EXPLANATION = "Confidential: our licence with the aggregator ended on 1 March."
# A claimant whose mailbox is at none of the targets' domains: the request waits for review.
UNMATCHED = {"email": "agent@rights.example.org"}


def ingest(
    client: TestClient,
    headers: dict[str, str],
    n: int = 1,
    host: str = "www.reuters.com",
    **overrides: Any,
) -> dict[str, Any]:
    """Ingest article `n` from `host` through the API; its public representation."""
    return ingest_article(
        client,
        headers,
        n,
        source_url=f"https://{host}/world/story-{n}",
        publisher={"name": host.removeprefix("www."), "url": f"https://{host}"},
        **overrides,
    )


def ingest_many(
    client: TestClient, headers: dict[str, str], count: int, host: str = "www.reuters.com"
) -> list[int]:
    """Ingest `count` articles from `host` in one batch; their ids."""
    payloads = [
        article_payload(n, source_url=f"https://{host}/world/story-{n}") for n in range(count)
    ]
    return ingest_all(client, headers, payloads)


def filing(targets: list[Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid filing body; `claimant` overrides merge into the default claimant."""
    claimant = {
        "name": CLAIMANT_NAME,
        "email": CLAIMANT_EMAIL,
        "organization": "Reuters",
        "role": "owner",
        **overrides.pop("claimant", {}),
    }
    body: dict[str, Any] = {
        "claimant": claimant,
        "reason": "copyright",
        "targets": targets if targets is not None else [],
        "explanation": EXPLANATION,
        "good_faith": True,
        "accurate": True,
        "signature": "P. Claimant",
    }
    body.update(overrides)
    return body


def file(client: TestClient, body: dict[str, Any], expect: int = 202) -> dict[str, Any]:
    response = client.post("/v1/takedowns", json=body)
    assert response.status_code == expect, response.text
    return response.json()


def rejected(
    client: TestClient, headers: dict[str, str], targets: list[Any] | None = None
) -> dict[str, Any]:
    """A request filed, then rejected by the operator whose key `headers` bear; the filing's
    answer."""
    filed = file(client, filing(targets or ["https://www.reuters.com/world/x"], claimant=UNMATCHED))
    answer = client.post(
        f"/v1/admin/takedowns/{filed['id']}/reject",
        json={"reason": "We could not establish that you own the rights."},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return filed


def client_from(app: FastAPI, address: str) -> TestClient:
    """A client of `app` whose requests come from `address`."""
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


def confirmation_code(engine: Engine, takedown_id: str) -> str:
    """The code of the confirmation link in the request's receipt e-mail, as the outbox holds
    it until the e-mail is sent (what the claimant would read in the message)."""
    with new_session(engine) as session:
        code = session.scalars(
            select(ClaimantEmail.confirmation_code).where(  # type: ignore[call-overload]
                ClaimantEmail.takedown_id == takedown_id,
                ClaimantEmail.kind == EmailKind.receipt.value,
            )
        ).one()
    assert code, "the receipt holds no confirmation code (sent already, or not needed)"
    return str(code)


def confirm(
    client: TestClient, engine: Engine, takedown_id: str, expect: int = 200
) -> dict[str, Any]:
    """The claimant presses the button behind the e-mailed link (the JSON form of it)."""
    code = confirmation_code(engine, takedown_id)
    response = client.post(f"/v1/takedowns/{takedown_id}/confirm", json={"code": code})
    assert response.status_code == expect, response.text
    return response.json()


def file_confirmed(client: TestClient, engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    """File a request and confirm its address: the filing's answer, with the status and
    targets as they stand after the confirmation."""
    filed = file(client, body)
    confirmed = confirm(client, engine, filed["id"])
    return {**filed, "status": confirmed["status"], "targets": confirmed["targets"]}


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """A problem+json answer of `status`, with its type, title and detail; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://byline.dev/problems/")
    assert body["title"] and body["detail"]
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def load(bind: Bind, takedown_id: str) -> Takedown:
    with reading(bind) as session:
        takedown = session.get(Takedown, takedown_id)
        assert takedown is not None
        return takedown


def article_ids(engine: Engine, takedown_id: str) -> list[int]:
    with new_session(engine) as session:
        ids = session.scalars(
            select(TakedownTarget.article_id).where(  # type: ignore[call-overload]
                TakedownTarget.takedown_id == takedown_id,
                TakedownTarget.article_id.is_not(None),  # type: ignore[union-attr]
            )
        )
        return sorted(set(ids))


def carry_out(engine: Engine, clock: FrozenClock, takedown_id: str, article_id: int) -> bool:
    """What the scheduler does for one queued row, in its own transaction."""
    with new_session(writer(engine)) as session, session.begin():
        return carry_out_removal(
            session=session, takedown_id=takedown_id, article_id=article_id, now=clock.now()
        )


def tick(engine: Engine, settings: Settings, clock: FrozenClock) -> TickResult:
    """One removal worker tick at the clock's time: due removals run."""
    return run_removals(engine, settings, clock)


def audit_actions(
    engine: Engine, takedown_id: str
) -> list[tuple[str, str, str | None, str | None]]:
    with new_session(engine) as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.takedown_id == takedown_id)  # type: ignore[arg-type]
            .order_by(AuditEvent.id)  # type: ignore[arg-type]
        )
        return [(e.action, e.actor, e.from_status, e.to_status) for e in events]
