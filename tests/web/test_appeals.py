"""Appeals in the browser: the claimant's form on the status page, the appeal in the
operators' queue with its own deadline, and its decision by another operator. Also the
policy's risk reasons, one badge each."""

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from app.auth import Scope
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from app.notifications.models import EmailKind
from app.takedowns.models import TakedownAppeal
from tests.factories import make_key
from tests.notifications.factories import emails
from tests.takedowns.factories import (
    UNMATCHED,
    audit_actions,
    bearer,
    file,
    filing,
    ingest,
    load,
    rejected,
    tick,
)
from tests.web.factories import csrf_token
from tests.web.test_console import file_unconfirmed, post, signed_in

STATEMENT = "Our licence with you ended on 1 March; the letter is attached."
RISK_BADGE = re.compile(r'<span class="badge badge-risk">([^<]*)</span>')


@pytest.fixture
def rejecter(engine: Engine) -> str:
    return make_key(engine, Scope.admin, "operator-ana")


@pytest.fixture
def other_operator(engine: Engine) -> str:
    return make_key(engine, Scope.admin, "operator-ben")


def status_page(filed: dict[str, Any]) -> str:
    return f"/takedown/{filed['id']}?token={filed['status_token']}"


def appeal_from_page(client: TestClient, filed: dict[str, Any], statement: str) -> Any:
    """Open the status page and send its appeal form, as a browser without JavaScript."""
    token = csrf_token(client, status_page(filed))
    return client.post(
        f"/takedown/{filed['id']}/appeal",
        data={"csrf_token": token, "token": filed["status_token"], "statement": statement},
        follow_redirects=False,
    )


def queue_ids(client: TestClient, query: str = "") -> list[str]:
    """Every request listed, in order (appeals have no checkbox: bulk never decides them)."""
    page = client.get(f"/admin/takedowns{query}")
    assert page.status_code == 200, page.text
    return re.findall(r'<a href="/admin/takedowns/([0-9a-f-]{36})"><code>', page.text)


def appeals(engine: Engine) -> list[TakedownAppeal]:
    with new_session(engine) as session:
        return list(session.scalars(select(TakedownAppeal)))


# The claimant's form -----------------------------------------------------------------------


def test_a_rejected_claimant_appeals_from_the_status_page(
    web_client: TestClient, engine: Engine, clock: FrozenClock, rejecter: str
) -> None:
    filed = rejected(web_client, bearer(rejecter))
    page = web_client.get(status_page(filed)).text
    assert "Appeal this decision" in page
    assert f'action="/takedown/{filed["id"]}/appeal"' in page
    answer = appeal_from_page(web_client, filed, STATEMENT)
    assert answer.status_code == 303
    assert answer.headers["location"] == status_page(filed)
    [appeal] = appeals(engine)
    assert appeal.statement == STATEMENT
    assert appeal.due_at == clock.now() + timedelta(days=7)
    assert appeal.rejected_by == "operator-ana"
    shown = web_client.get(status_page(filed)).text
    assert "Your appeal" in shown and "Appeal this decision" not in shown
    assert html.escape(STATEMENT, quote=False) in shown
    assert "decides it by" in shown
    assert ("appeal_filed", "claimant", None, None) in audit_actions(engine, filed["id"])
    assert len(emails(engine, filed["id"], EmailKind.appeal_received)) == 1


def test_the_appeal_form_refuses_an_empty_statement_and_names_the_field(
    web_client: TestClient, engine: Engine, rejecter: str
) -> None:
    filed = rejected(web_client, bearer(rejecter))
    answer = appeal_from_page(web_client, filed, "   ")
    assert answer.status_code == 422
    assert 'id="statement-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert appeals(engine) == []


def test_the_appeal_form_needs_its_csrf_token_and_the_status_token(
    web_client: TestClient, engine: Engine, rejecter: str
) -> None:
    filed = rejected(web_client, bearer(rejecter))
    path = f"/takedown/{filed['id']}/appeal"
    forged = web_client.post(path, data={"token": filed["status_token"], "statement": STATEMENT})
    assert forged.status_code == 403
    token = csrf_token(web_client, status_page(filed))
    guessed = web_client.post(
        path, data={"csrf_token": token, "token": "guess", "statement": STATEMENT}
    )
    assert guessed.status_code == 404
    assert appeals(engine) == []


def test_a_second_appeal_or_one_after_6_months_is_explained_on_the_page(
    web_client: TestClient, engine: Engine, clock: FrozenClock, rejecter: str
) -> None:
    once = rejected(web_client, bearer(rejecter))
    late = rejected(web_client, bearer(rejecter), ["https://www.reuters.com/world/y"])
    assert appeal_from_page(web_client, once, STATEMENT).status_code == 303
    # An old tab still showing the form sends it again.
    again = web_client.post(
        f"/takedown/{once['id']}/appeal",
        data={
            "csrf_token": csrf_token(web_client),
            "token": once["status_token"],
            "statement": "Again.",
        },
    )
    assert again.status_code == 409 and "appealed already" in again.text
    clock.advance(timedelta(days=190))
    page = web_client.get(status_page(late)).text
    assert "Appeal this decision" not in page and "The time to appeal" in page
    token = csrf_token(web_client)
    expired = web_client.post(
        f"/takedown/{late['id']}/appeal",
        data={"csrf_token": token, "token": late["status_token"], "statement": STATEMENT},
    )
    assert expired.status_code == 410 and "closed" in expired.text
    assert len(appeals(engine)) == 1


# The operators' console --------------------------------------------------------------------


def test_an_appeal_is_in_the_queue_by_its_own_deadline_and_not_decided_in_bulk(
    web_client: TestClient, engine: Engine, clock: FrozenClock, rejecter: str
) -> None:
    filed = rejected(web_client, bearer(rejecter))
    appeal_from_page(web_client, filed, STATEMENT)
    clock.advance(timedelta(days=6, hours=12))
    # Due in 24 hours: later than the appeal, due in 12.
    fresh = file_unconfirmed(web_client, 9)
    signed_in(web_client, rejecter)
    assert queue_ids(web_client) == [filed["id"], fresh]
    assert queue_ids(web_client, "?view=appealed") == [filed["id"]]
    assert filed["id"] in queue_ids(web_client, "?view=rejected")
    page = web_client.get("/admin/takedowns").text
    assert '<span class="countdown due-later">12 h 0 min left</span>' in page
    assert "appeal to decide by" in page
    assert '<span class="countdown due-later">24 h 0 min left</span>' in page  # the fresh one
    clock.advance(timedelta(hours=11, minutes=30))
    signed_in(web_client, rejecter)  # the session of 8 hours has ended
    assert (
        '<span class="countdown due-urgent">30 min left</span>'
        in web_client.get("/admin/takedowns?view=appealed").text
    )
    clock.advance(timedelta(hours=1))
    assert queue_ids(web_client, "?view=overdue") == [filed["id"]]
    # Bulk decisions never decide an appeal: it is refused, and stays undecided.
    answer = post(
        web_client, "/admin/takedowns/bulk", "/admin/takedowns", action="approve", ids=[filed["id"]]
    )
    assert answer.headers["location"] == "/admin/takedowns?decided=0&refused=1"
    assert load(engine, filed["id"]).status == "rejected"
    [appeal] = appeals(engine)
    assert appeal.decided_at is None


def test_the_operator_who_rejected_may_not_decide_the_appeal_another_upholds_it(
    web_client: TestClient,
    engine: Engine,
    clock: FrozenClock,
    rejecter: str,
    other_operator: str,
) -> None:
    filed = rejected(web_client, bearer(rejecter))
    appeal_from_page(web_client, filed, STATEMENT)
    page = f"/admin/takedowns/{filed['id']}"
    signed_in(web_client, rejecter)
    shown = web_client.get(page).text
    assert html.escape(STATEMENT, quote=False) in shown and "Decide by" in shown
    assert "another operator decides its appeal" in shown
    assert "/appeal/uphold" not in shown
    refused = post(web_client, f"{page}/appeal/uphold", page, template="licensed")
    assert refused.status_code == 403
    assert "another operator must decide" in refused.text
    assert post(web_client, f"{page}/appeal/grant", page).status_code == 403
    assert appeals(engine)[0].decided_at is None

    signed_in(web_client, other_operator)
    assert "/appeal/uphold" in web_client.get(page).text
    empty = post(web_client, f"{page}/appeal/uphold", page, template="", statement=" ")
    assert empty.status_code == 409 and "needs a statement of reasons" in empty.text
    upheld = post(
        web_client,
        f"{page}/appeal/uphold",
        page,
        template="licensed",
        statement="Your letter does not end our licence.",
    )
    assert upheld.status_code == 303
    [appeal] = appeals(engine)
    assert (appeal.outcome, appeal.decided_by) == ("upheld", "operator-ben")
    assert ("appeal_upheld", "operator-ben", None, None) in audit_actions(engine, filed["id"])
    [email] = emails(engine, filed["id"], EmailKind.appeal_upheld)
    assert email.context["statement_of_reasons"].endswith("Your letter does not end our licence.")
    assert filed["id"] not in queue_ids(web_client)
    claimant_view = web_client.get(status_page(filed)).text
    assert "the rejection stands" in claimant_view


def test_granting_an_appeal_in_the_console_removes_the_article(
    web_client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    rejecter: str,
    other_operator: str,
) -> None:
    article = ingest(web_client, ingest_headers, 1)
    filed = rejected(web_client, bearer(rejecter), [article["id"]])
    clock.advance(timedelta(days=30))
    appeal_from_page(web_client, filed, STATEMENT)
    signed_in(web_client, other_operator)
    page = f"/admin/takedowns/{filed['id']}"
    answer = post(web_client, f"{page}/appeal/grant", page)
    assert answer.status_code == 303
    assert load(engine, filed["id"]).status == "queued"
    tick(engine, settings, clock)
    assert web_client.get(f"/v1/articles/{article['id']}").status_code == 451
    assert load(engine, filed["id"]).status == "completed"
    actions = audit_actions(engine, filed["id"])
    assert ("appeal_granted", "operator-ben", None, None) in actions
    assert ("approved", "operator-ben", "rejected", "queued") in actions
    assert len(emails(engine, filed["id"], EmailKind.appeal_granted)) == 1
    assert "appeal granted by operator-ben" in web_client.get(page).text
    assert filed["id"] not in queue_ids(web_client)


# Risk reasons ------------------------------------------------------------------------------


def test_each_risk_reason_is_its_own_badge_even_with_semicolons_inside(
    web_client: TestClient, engine: Engine, ingest_headers: dict[str, str], rejecter: str
) -> None:
    article = ingest(web_client, ingest_headers, 1)
    body = filing(
        [article["id"]],
        claimant=UNMATCHED,
        domain="reuters.com",
        original_url="https://www.reuters.com/world/story-1",
        original_published_at="2030-01-01T00:00:00Z",
    )
    takedown_id = file(web_client, body)["id"]
    reasons = load(engine, takedown_id).escalation_reasons
    assert reasons is not None and len(reasons) == 2
    domain, later = reasons
    assert domain == (
        "asks for the whole domain reuters.com without a publisher key (DNS proof); "
        "an operator decides"
    )
    assert later.startswith("claims an original published 2030-01-01")
    assert "after we first saw the content" in later
    signed_in(web_client, rejecter)
    for path in ("/admin/takedowns", f"/admin/takedowns/{takedown_id}"):
        badges = [html.unescape(text) for text in RISK_BADGE.findall(web_client.get(path).text)]
        assert badges[:2] == [domain, later], path
