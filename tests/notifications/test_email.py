"""Claimants get e-mail on receipt, on each decision and on completion: through a real SMTP
server on 127.0.0.1, from the outbox, retried with backoff, and never twice for one event."""

import logging
import re
import ssl
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from app.clock import FrozenClock
from app.config import Settings, parse_smtp_url
from app.db import new_session, writer
from app.notifications.email import SmtpMailer
from app.notifications.emails import EMAILS
from app.notifications.models import ClaimantEmail
from tests.notifications.conftest import MakeNotifier, SmtpServer
from tests.notifications.factories import emails, our_logs
from tests.takedowns.factories import (
    CLAIMANT_EMAIL,
    CLAIMANT_NAME,
    UNMATCHED,
    confirm,
    confirmation_code,
    file,
    file_confirmed,
    filing,
    ingest,
    load,
)
from tests.workers import run_removals

LEASE = timedelta(seconds=60)


def file_request(client: TestClient, headers: dict[str, str], n: int = 1) -> dict[str, Any]:
    """File a request for a new article from the claimant's own domain: its receipt, with
    the confirmation link, is the one e-mail in the outbox."""
    article = ingest(client, headers, n)
    return file(client, filing([article["id"]]))


def test_receipt_has_the_confirmation_link_the_status_link_and_the_deadline_in_text_and_html(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file(client, filing([article["id"]], claimant=UNMATCHED))
    code = confirmation_code(engine, filed["id"])

    result = make_notifier().run_once()

    assert result.of("email")["sent"] == 1
    [arrived] = smtp_server.messages
    assert arrived.rcpt_tos == ["agent@rights.example.org"]
    assert arrived.mail_from == "noreply@news.example"
    message = arrived.message
    assert message["To"] == "agent@rights.example.org"
    assert message["Subject"] == "Confirm your removal request (due by 6 January 2026, 09:00 UTC)"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text, html = arrived.part("plain"), arrived.part("html")
    status_link = f"https://news.example/takedown/{filed['id']}?token={filed['status_token']}"
    confirm_link = f"https://news.example/takedown/{filed['id']}/confirm?code={code}"
    for part in (text, html):
        assert confirm_link in part
        assert status_link in part
        assert filed["id"] in part
        assert "Nothing is removed or blocked until you confirm" in part
        assert "after a short review, at Monday 5 January 2026, 13:00 UTC" in part
    assert f'href="{confirm_link}"' in html and f'href="{status_link}"' in html
    # Both links work: the status page, and the page with the button (which confirms nothing).
    assert client.get(status_link.removeprefix("https://news.example")).status_code == 200
    assert client.get(confirm_link.removeprefix("https://news.example")).status_code == 200
    assert load(engine, filed["id"]).email_confirmed_at is None
    # Sent: neither the token nor the code is kept in the outbox any longer.
    [row] = emails(engine)
    assert (row.kind, row.status, row.attempts) == ("receipt", "done", 1)
    assert (row.secret, row.confirmation_code) == (None, None)


def test_rejection_carries_the_statement_of_reasons_escaped_in_html(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file(client, filing([article["id"]], claimant=UNMATCHED))
    reasons = 'The article quotes "Tom & Jerry" under a licence we hold until 2027.'
    response = client.post(
        f"/v1/admin/takedowns/{filed['id']}/reject",
        json={"reason": reasons},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text

    assert make_notifier().run_once().of("email")["sent"] == 2

    receipt, rejection = smtp_server.messages
    assert receipt.message["Subject"].startswith("Confirm your removal request")
    assert rejection.message["Subject"] == "Your removal request was rejected"
    assert reasons in rejection.part("plain")
    assert "The article quotes &#34;Tom &amp; Jerry&#34; under a licence" in rejection.part("html")
    # Only the receipt carries the links.
    assert "token=" not in rejection.part("plain") and "code=" not in rejection.part("plain")


def test_escalation_approval_and_completion_each_send_one_email_in_order(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    first, second = ingest(client, ingest_headers, 1), ingest(client, ingest_headers, 2)
    filed = file_confirmed(client, engine, filing([first["id"], second["id"]], claimant=UNMATCHED))
    for action in ("escalate", "approve"):
        response = client.post(f"/v1/admin/takedowns/{filed['id']}/{action}", headers=admin_headers)
        assert response.status_code == 200, response.text
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 2

    assert make_notifier().run_once().of("email")["sent"] == 4

    subjects = [arrived.message["Subject"] for arrived in smtp_server.messages]
    assert subjects[1:] == [
        "Your removal request is being checked by our staff",
        "Your removal request was approved",
        "Your removal request is completed",
    ]
    completion = smtp_server.messages[3]
    assert "We removed 2 articles." in completion.part("plain")
    assert "We removed 2 articles." in completion.part("html")
    assert [row.kind for row in emails(engine)] == ["receipt", "escalated", "approved", "completed"]


def test_an_address_nobody_confirmed_gets_its_receipt_and_nothing_when_it_goes_to_an_operator(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    filed = file_request(client, ingest_headers)
    clock.advance(settings.takedown_review_window)
    assert run_removals(engine, settings, clock).swept["requests_advanced"] == 1
    assert load(engine, filed["id"]).status == "escalated"

    assert make_notifier().run_once().of("email")["sent"] == 1

    [receipt] = smtp_server.messages
    assert receipt.message["Subject"].startswith("Confirm your removal request")
    assert [row.kind for row in emails(engine)] == ["receipt"]


def test_a_request_naming_only_unseen_urls_completes_once_confirmed_and_mails_in_order(
    client: TestClient,
    engine: Engine,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    """Before, such a request completed at filing, its blocks acting at once for anyone who
    typed an address. Now it waits for the confirmation (here, from the URL's own domain)."""
    filed = file(client, filing(["https://www.reuters.com/world/never-seen"]))
    assert filed["status"] == "received"
    assert confirm(client, engine, filed["id"])["status"] == "completed"

    make_notifier().run_once()

    subjects = [arrived.message["Subject"] for arrived in smtp_server.messages]
    assert subjects[0].startswith("Confirm your removal request")
    assert subjects[1].endswith("completed")
    assert "Nothing was left to remove." in smtp_server.messages[1].part("plain")


def test_without_an_smtp_url_each_email_is_written_to_a_file_named_in_one_log_line(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    filed = file_request(client, ingest_headers)
    code = confirmation_code(engine, filed["id"])
    unset = settings.model_copy(update={"smtp_url": None})
    worker = make_notifier(settings=unset)

    with caplog.at_level(logging.DEBUG):
        assert worker.run_once().of("email")["sent"] == 1

    [path] = sorted(settings.mail_dir.iterdir())
    assert path.suffix == ".eml"
    assert CLAIMANT_EMAIL not in path.name
    written = message_from_bytes(path.read_bytes(), policy=default)
    assert written["To"] == CLAIMANT_EMAIL
    assert written["Subject"].startswith("Confirm your removal request")
    text = written.get_body(preferencelist=("plain",))
    assert text is not None
    confirm_link = f"https://news.example/takedown/{filed['id']}/confirm?code={code}"
    assert confirm_link in text.get_content()  # type: ignore[attr-defined]
    logged = our_logs(caplog)
    [line] = [line for line in logged.splitlines() if path.name in line]
    assert line.startswith(f"e-mail written to {path}")
    assert CLAIMANT_EMAIL not in logged and CLAIMANT_NAME not in logged
    [row] = emails(engine)
    assert (row.status, row.secret, row.confirmation_code) == ("done", None, None)
    assert smtp_server.messages == []


def test_a_temporary_refusal_is_retried_with_backoff_and_sent_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    file_request(client, ingest_headers)
    smtp_server.inbox.rcpt_answers = ["451 4.3.0 Mailbox temporarily unavailable"]
    runner = make_notifier()

    assert runner.run_once().of("email")["retried"] == 1
    [row] = emails(engine)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.run_at == clock.now() + timedelta(seconds=30)
    assert row.last_error == "the SMTP server refused the recipient with 451"

    assert runner.run_once().claimed.total() == 0  # not before the backoff
    clock.advance(timedelta(seconds=30))
    assert runner.run_once().of("email")["sent"] == 1
    assert runner.run_once().claimed.total() == 0
    assert len(smtp_server.messages) == 1
    [row] = emails(engine)
    assert (row.status, row.attempts) == ("done", 2)


def test_a_permanent_refusal_fails_at_once_and_never_names_the_claimant(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    file_request(client, ingest_headers)
    smtp_server.inbox.rcpt_answers = [f"550 5.1.1 <{CLAIMANT_EMAIL}>: no such user"]

    with caplog.at_level(logging.DEBUG):
        assert make_notifier().run_once().of("email")["failed"] == 1

    [row] = emails(engine)
    assert (row.status, row.secret) == ("failed", None)
    assert row.last_error == "the SMTP server refused the recipient with 550"
    logged = our_logs(caplog)
    assert "e-mail failed for good" in logged
    assert CLAIMANT_EMAIL not in logged and CLAIMANT_NAME not in logged


def test_a_message_refused_after_its_data_fails_for_good_on_5xx(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    """The server's answer to the message itself counts: a 554 after DATA is not "sent"."""
    file_request(client, ingest_headers)
    smtp_server.inbox.data_answers = ["554 5.7.1 Message rejected as spam"]

    assert make_notifier().run_once().of("email")["failed"] == 1

    [row] = emails(engine)
    assert (row.status, row.secret) == ("failed", None)
    assert row.last_error == "the SMTP server refused the message with 554"
    assert smtp_server.messages == []


def test_a_message_refused_after_its_data_with_4xx_is_retried_and_sent_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    file_request(client, ingest_headers)
    smtp_server.inbox.data_answers = ["452 4.3.1 Insufficient system storage"]
    runner = make_notifier()

    assert runner.run_once().of("email")["retried"] == 1
    [row] = emails(engine)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error == "the SMTP server refused the message with 452"
    clock.advance(timedelta(seconds=30))
    assert runner.run_once().of("email")["sent"] == 1
    assert len(smtp_server.messages) == 1
    [row] = emails(engine)
    assert (row.status, row.attempts) == ("done", 2)


def test_server_down_then_back_sends_every_email_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    for n in (1, 2, 3):
        file_request(client, ingest_headers, n)
    smtp_server.stop()
    runner = make_notifier()

    for _ in range(3):
        result = runner.run_once()
        assert result.of("email")["sent"] == 0
        clock.advance(timedelta(minutes=10))
    assert {row.status for row in emails(engine)} == {"queued"}
    assert all("ConnectionRefusedError" in (row.last_error or "") for row in emails(engine))

    smtp_server.start()
    assert runner.run_once().of("email")["sent"] == 3
    assert runner.run_once().claimed.total() == 0
    assert sorted(arrived.rcpt_tos[0] for arrived in smtp_server.messages) == [CLAIMANT_EMAIL] * 3
    assert {row.status for row in emails(engine)} == {"done"}


def test_an_email_queued_twice_for_one_event_is_sent_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    from app.notifications.models import EmailKind
    from app.notifications.outbox import notify_claimant
    from app.takedowns.models import Takedown

    filed = file_request(client, ingest_headers)
    with new_session(writer(engine)) as session, session.begin():
        takedown = session.get(Takedown, filed["id"])
        assert takedown is not None
        notify_claimant(session=session, takedown=takedown, kind=EmailKind.receipt, now=clock.now())

    make_notifier("a").run_once()
    make_notifier("b").run_once()

    assert len(smtp_server.messages) == 1
    assert len(emails(engine)) == 1


def test_a_runner_that_died_before_the_hand_over_is_replaced_and_the_email_sent_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    file_request(client, ingest_headers)
    with new_session(writer(engine)) as session, session.begin():
        # Claimed (a try counted) and leased to a worker that then died.
        claimed = EMAILS.claim(
            session=session, owner="dead", now=clock.now(), limit=10, lease=LEASE
        )
        assert len(claimed) == 1
    runner = make_notifier()
    assert runner.run_once().claimed.total() == 0  # still leased

    clock.advance(LEASE + timedelta(seconds=1))
    result = runner.run_once()

    assert (result.recovered["email"], result.of("email")["sent"]) == (1, 1)
    assert len(smtp_server.messages) == 1
    [row] = emails(engine)
    assert (row.status, row.attempts, row.lease_owner) == ("done", 2, runner.owner)


def test_a_runner_that_died_during_the_hand_over_is_never_sent_again(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    file_request(client, ingest_headers)
    with new_session(writer(engine)) as session, session.begin():
        [claimed] = EMAILS.claim(
            session=session, owner="dead", now=clock.now(), limit=10, lease=LEASE
        )
        # The hand-over began (just before SMTP DATA), then the worker died.
        assert EMAILS.renew(
            session=session,
            ids=[claimed.id],
            owner="dead",
            now=clock.now(),
            lease=LEASE,
            values={"handed_over_at": clock.now()},
        )

    clock.advance(LEASE + timedelta(seconds=1))
    with caplog.at_level(logging.ERROR):
        result = make_notifier().run_once()

    assert result.recovered["email"] == 1
    assert result.of("email")["unconfirmed"] == 1
    assert smtp_server.messages == []
    [row] = emails(engine)
    assert (row.status, row.secret) == ("unconfirmed", None)
    assert "may have been sent" in caplog.text
    assert 'byline_claimant_emails{status="unconfirmed"} 1.0' in client.get("/metrics").text
    assert make_notifier().run_once().claimed.total() == 0


def test_a_lost_connection_during_the_hand_over_is_not_retried(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    file_request(client, ingest_headers)

    class DropsDuringData(SmtpMailer):
        def send(self, message: Any, *, recipient: str, before_data: Any) -> None:
            def then_drop() -> bool:
                assert before_data()
                raise ConnectionResetError("connection reset by peer")

            super().send(message, recipient=recipient, before_data=then_drop)

    url = parse_smtp_url(f"smtp://127.0.0.1:{smtp_server.port}?starttls=off")
    mailer = DropsDuringData(url, sender=settings.email_sender, timeout=5)

    assert make_notifier(mailer=mailer).run_once().of("email")["unconfirmed"] == 1
    clock.advance(timedelta(hours=1))
    assert make_notifier().run_once().claimed.total() == 0
    [row] = emails(engine)
    assert row.status == "unconfirmed"
    assert "ConnectionResetError" in (row.last_error or "")


def test_an_email_failing_for_the_whole_window_is_given_up(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    file_request(client, ingest_headers)
    smtp_server.stop()
    runner = make_notifier()
    runner.run_once()
    with new_session(writer(engine)) as session, session.begin():
        session.execute(update(ClaimantEmail).values(run_at=clock.now()))
    clock.advance(timedelta(hours=24))

    assert runner.run_once().of("email")["failed"] == 1
    [row] = emails(engine)
    assert (row.status, row.secret) == ("failed", None)


def test_starttls_is_required_and_used_with_the_credentials_of_the_url(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    make_notifier: MakeNotifier,
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    logins: list[tuple[str, str]] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        logins.append((auth.login.decode(), auth.password.decode()))
        return AuthResult(success=auth.password == b"p@ss word")

    secure = SmtpServer(
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    secure.start()
    plain = SmtpServer()
    plain.start()
    try:
        file_request(client, ingest_headers)
        client_context = ssl.create_default_context()
        authority.configure_trust(client_context)
        url = parse_smtp_url(f"smtp://mailer:p%40ss%20word@127.0.0.1:{secure.port}")
        assert (url.starttls, url.port, url.password) == (True, secure.port, "p@ss word")
        mailer = SmtpMailer(
            url, sender=settings.email_sender, timeout=5, ssl_context=client_context
        )
        assert make_notifier(mailer=mailer).run_once().of("email")["sent"] == 1
        assert logins == [("mailer", "p@ss word")]
        assert len(secure.messages) == 1

        # A server that does not offer STARTTLS is refused, never written to in clear.
        file_request(client, ingest_headers, 2)
        clear = parse_smtp_url(f"smtp://mailer:secret@127.0.0.1:{plain.port}")
        refusing = SmtpMailer(clear, sender=settings.email_sender, timeout=5)
        assert make_notifier(mailer=refusing).run_once().of("email")["retried"] == 1
        assert plain.messages == []
        queued = [row for row in emails(engine) if row.status == "queued"]
        assert "STARTTLS" in (queued[0].last_error or "")
    finally:
        secure.stop()
        plain.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "must be smtp://"),
        ("smtp://", "must be smtp://"),
        ("smtp://u:p@host?starttls=off", "refuses to send a password in clear"),
        ("smtps://host?starttls=off", "TLS from the start"),
        ("smtp://host/path", "takes no path"),
        ("smtp://host?tls=1", "the only option"),
        ("smtp://host:99999", "not a valid URL"),
    ],
)
def test_bad_smtp_urls_are_refused_without_repeating_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        Settings(smtp_url=url)  # type: ignore[arg-type]
    assert "p@" not in str(error.value).split("input_value")[0]


def test_smtp_url_defaults() -> None:
    assert parse_smtp_url("smtp://relay.example").port == 587
    secure = parse_smtp_url("smtps://u:p@relay.example")
    assert (secure.port, secure.implicit_tls, secure.starttls) == (465, True, False)
    clear = parse_smtp_url("smtp://127.0.0.1:25?starttls=off")
    assert (clear.port, clear.starttls, clear.username) == (25, False, None)
