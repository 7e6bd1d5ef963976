"""The mixed traffic of `bench/load.py`: 90% reads, 8% ingest, 2% takedown filings, from many
concurrent clients, every answer timed and checked against what its route may answer.

Filings stay `received` until the claimant confirms the address. Claimants behave as people
do: a confirmer reads the receipts from the mail directory (the .eml files byline's
FileMailer writes), and for most filings (CONFIRM_SHARE) a claimant confirms with the code of
the link a few seconds later; the others never confirm, and must remove nothing.

While it runs, a watcher reads the database every half second for newly removed articles and
asks the API for each at once: a removed article must answer 451, and a read that was sent
after the removal had been seen and still got 200 is counted as a violation.
"""

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.mailbox import ConfirmationEmail, Inbox

# What each route may answer in this traffic; anything else is an error. 451: a removed
# article, or an update of one (its URL is blocked). 429: the filing and confirmation rate
# limits, on purpose (a confirmation answered 429 leaves its request unconfirmed). A filing
# is always a new request (202), repeats included.
EXPECTED = {
    "GET /v1/articles": {200},
    "GET /v1/articles?q": {200},
    "GET /v1/articles/{id}": {200, 451},
    "GET /v1/articles/by-slug/{slug}": {200, 451},
    "GET /v1/publishers": {200},
    "GET /v1/transparency": {200},
    "POST /v1/articles": {200, 201, 451},
    "POST /v1/articles/batch": {200},
    "POST /v1/takedowns": {202, 429},
    "POST /v1/takedowns/{id}/confirm": {200, 429},
    "watch: removed article": {451},
}
WORDS = ["flood", "election", "market", "storm", "court", "vaccine", "budget", "strike"]
DOMAINS = [f"daily{n:02d}.com" for n in range(40)]
# Articles loaded before the traffic starts: article(n, DOMAINS[n % 40]) for n below this.
SEED_ARTICLES = 10_000
CLIENT_ADDRESSES = [f"198.51.100.{n}" for n in range(1, 61)]
# Of the filings: claimants whose mailbox is at the articles' domain (removal at once once
# confirmed; the others after the review window), and filings whose claimant confirms.
DOMAIN_MAILBOX_SHARE = 0.7
CONFIRM_SHARE = 0.8
# A claimant confirms this long (uniform, seconds) after the e-mail was written.
READING_DELAY = (0.0, 3.0)


def article(n: int, domain: str, *, revision: int = 0) -> dict[str, Any]:
    word = WORDS[n % len(WORDS)]
    return {
        "title": f"The {word} report number {n}" + (f" (update {revision})" if revision else ""),
        "body_html": f"<p>Reporting on the {word}, part {n}.</p>" + "<p>More reporting.</p>" * 20,
        "source_url": f"https://www.{domain}/{2024 + n % 3}/story-{n}",
        "publisher": {"name": domain.removesuffix(".com").title(), "url": f"https://{domain}"},
        "authors": [{"name": f"Reporter {n % 50}"}],
        "published_at": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
        "language": "en",
        "tags": [word, domain.split(".")[0]],
    }


# Idle connections are dropped by the client before the server's 5 s keep-alive ends: one
# reused just as the server closed it failed with ReadError (session 9, PostgreSQL run).
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=2.0)


@dataclass
class Known:
    """What the traffic knows of the articles: ids by domain, and slugs."""

    ids_by_domain: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    slugs: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def add(self, domain: str, article_id: int, slug: str | None = None) -> None:
        self.ids_by_domain[domain].append(article_id)
        self.ids.append(article_id)
        if slug:
            self.slugs.append(slug)


@dataclass
class Record:
    """Every answer, by route: statuses, latencies; acknowledged writes; violations."""

    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    # source_url -> article id, for every ingest answered 200/201 (or created/updated/unchanged
    # in a batch).
    acknowledged: dict[str, int] = field(default_factory=dict)
    filed: list[str] = field(default_factory=list)
    # takedown id -> whether its claimant will confirm (decided at filing).
    will_confirm: dict[str, bool] = field(default_factory=dict)
    # takedown id -> the status the confirmation was answered with (200: confirmed).
    confirmations: dict[str, int] = field(default_factory=dict)
    removed_seen: dict[int, float] = field(default_factory=dict)  # article id -> when seen
    violations: list[str] = field(default_factory=list)
    watched: int = 0

    def note(self, route: str, status: int, seconds: float, detail: str = "") -> None:
        self.statuses[route][status] += 1
        self.latencies[route].append(seconds)
        if status not in EXPECTED[route] and len(self.unexpected) < 50:
            self.unexpected.append(f"{route}: {status} {detail[:300]}")


class Traffic:
    """`concurrency` clients, each choosing its next request by the mix, until `duration`."""

    def __init__(
        self,
        base_url: str,
        ingest_key: str,
        known: Known,
        *,
        first_new: int,
        removed_ids: Callable[[], dict[int, Any]],
        inbox: Inbox,
        seed: int = 7,
    ) -> None:
        self.base_url = base_url
        self.ingest_headers = {"Authorization": f"Bearer {ingest_key}"}
        self.known = known
        self.next_new = first_new
        self.removed_ids = removed_ids
        self.inbox = inbox
        self.random = random.Random(seed)
        self.record = Record()
        self._lock = threading.Lock()
        self._mix: list[tuple[float, Callable[[httpx.AsyncClient], Any]]] = [
            (0.28, self.list_page),
            (0.36, self.detail),
            (0.10, self.search),
            (0.08, self.by_slug),
            (0.06, self.publishers),
            (0.02, self.transparency),
            (0.06, self.ingest_one),
            (0.02, self.ingest_batch),
            (0.02, self.file_takedown),
        ]

    # Requests -------------------------------------------------------------------------------

    async def _timed(
        self, client: httpx.AsyncClient, route: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await client.request(method, url, **kwargs)
        self.record.note(route, response.status_code, time.perf_counter() - started, response.text)
        return response

    async def list_page(self, client: httpx.AsyncClient) -> None:
        params: dict[str, Any] = {"limit": 20}
        if self.random.random() < 0.4:
            params["domain"] = self.random.choice(DOMAINS)
        response = await self._timed(
            client, "GET /v1/articles", "GET", "/v1/articles", params=params
        )
        cursor = response.json().get("next_cursor") if response.status_code == 200 else None
        if cursor and self.random.random() < 0.3:
            await self._timed(
                client,
                "GET /v1/articles",
                "GET",
                "/v1/articles",
                params={**params, "cursor": cursor},
            )

    async def detail(self, client: httpx.AsyncClient) -> None:
        article_id = self.random.choice(self.known.ids)
        removed_before = article_id in self.record.removed_seen
        response = await self._timed(
            client, "GET /v1/articles/{id}", "GET", f"/v1/articles/{article_id}"
        )
        if removed_before and response.status_code == 200:
            self.record.violations.append(f"article {article_id} answered 200 after its removal")

    async def search(self, client: httpx.AsyncClient) -> None:
        params = {"q": self.random.choice(WORDS), "limit": 20}
        await self._timed(client, "GET /v1/articles?q", "GET", "/v1/articles", params=params)

    async def by_slug(self, client: httpx.AsyncClient) -> None:
        if self.known.slugs:
            slug = self.random.choice(self.known.slugs)
            await self._timed(
                client, "GET /v1/articles/by-slug/{slug}", "GET", f"/v1/articles/by-slug/{slug}"
            )

    async def publishers(self, client: httpx.AsyncClient) -> None:
        await self._timed(client, "GET /v1/publishers", "GET", "/v1/publishers")

    async def transparency(self, client: httpx.AsyncClient) -> None:
        await self._timed(client, "GET /v1/transparency", "GET", "/v1/transparency")

    def _new_number(self) -> int:
        with self._lock:
            self.next_new += 1
            return self.next_new

    async def ingest_one(self, client: httpx.AsyncClient) -> None:
        domain = self.random.choice(DOMAINS)
        if self.random.random() < 0.25:
            # An update of a seeded article (its number is its position in the seed).
            n = self.random.randrange(SEED_ARTICLES)
            domain = DOMAINS[n % len(DOMAINS)]
            body = article(n, domain, revision=self.random.randrange(1, 1000))
        else:
            body = article(self._new_number(), domain)
        response = await self._timed(
            client,
            "POST /v1/articles",
            "POST",
            "/v1/articles",
            json=body,
            headers=self.ingest_headers,
        )
        if response.status_code in (200, 201):
            stored = response.json()["article"]
            self.record.acknowledged[body["source_url"]] = stored["id"]
            if response.status_code == 201:
                self.known.add(domain, stored["id"], stored["slug"])

    async def ingest_batch(self, client: httpx.AsyncClient) -> None:
        items = []
        for _ in range(20):
            domain = self.random.choice(DOMAINS)
            items.append((domain, article(self._new_number(), domain)))
        response = await self._timed(
            client,
            "POST /v1/articles/batch",
            "POST",
            "/v1/articles/batch",
            json={"items": [body for _, body in items]},
            headers=self.ingest_headers,
        )
        if response.status_code == 200:
            for (domain, body), result in zip(items, response.json()["items"], strict=True):
                if result["status"] in ("created", "updated", "unchanged"):
                    self.record.acknowledged[body["source_url"]] = result["id"]
                    if result["status"] == "created":
                        self.known.add(domain, result["id"])

    async def file_takedown(self, client: httpx.AsyncClient) -> None:
        domain = self.random.choice(DOMAINS)
        candidates = self.known.ids_by_domain[domain]
        if not candidates:
            return
        targets = self.random.sample(candidates, k=min(len(candidates), self.random.randint(1, 3)))
        at_domain = self.random.random() < DOMAIN_MAILBOX_SHARE
        # A mailbox at the articles' domain: once confirmed, removal runs at once. Any other
        # mailbox: once confirmed, after the review window (short in this run). Unconfirmed,
        # neither ever runs: a filing in the name of legal@ a domain proves nothing.
        email = (
            f"legal@{domain}"
            if at_domain
            else f"agent{self.random.randrange(30)}@rights.example.org"
        )
        body = {
            "claimant": {"name": "Rights Desk", "email": email, "role": "owner"},
            "reason": self.random.choice(["copyright", "owner_request", "privacy"]),
            "targets": targets,
            "explanation": "We did not licence this republication.",
            "good_faith": True,
            "accurate": True,
            "signature": "Rights Desk",
        }
        # The clients sit behind the loopback proxy (forwarded_allow_ips): many addresses.
        headers = {"X-Forwarded-For": self.random.choice(CLIENT_ADDRESSES)}
        response = await self._timed(
            client, "POST /v1/takedowns", "POST", "/v1/takedowns", json=body, headers=headers
        )
        if response.status_code == 202:
            answer = response.json()
            if answer["status"] != "received" or answer["confirmation"] != "emailed":
                self.record.unexpected.append(f"filing answered {answer}"[:300])
            self.record.filed.append(answer["id"])
            self.record.will_confirm[answer["id"]] = self.random.random() < CONFIRM_SHARE

    async def confirm(self, client: httpx.AsyncClient, email: ConfirmationEmail) -> None:
        """The claimant opens the e-mail a moment later and confirms with its code."""
        await asyncio.sleep(self.random.uniform(*READING_DELAY))
        try:
            response = await self._timed(
                client,
                "POST /v1/takedowns/{id}/confirm",
                "POST",
                f"/v1/takedowns/{email.takedown_id}/confirm",
                json={"code": email.code},
            )
        except httpx.HTTPError as exc:
            self.record.unexpected.append(f"confirm: {type(exc).__name__}")
            return
        self.record.confirmations[email.takedown_id] = response.status_code
        if response.status_code == 200 and response.json()["proof"] != "confirmed_mailbox":
            self.record.unexpected.append(f"confirmation answered {response.text[:250]}")

    # Running ---------------------------------------------------------------------------------

    async def _client_loop(self, deadline: float) -> None:
        weights = [weight for weight, _ in self._mix]
        actions = [action for _, action in self._mix]
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=30, limits=CLIENT_LIMITS
        ) as client:
            while time.monotonic() < deadline:
                action = self.random.choices(actions, weights)[0]
                try:
                    await action(client)
                except httpx.HTTPError as exc:
                    self.record.unexpected.append(f"{action.__name__}: {type(exc).__name__}")

    async def _confirm_claims(self, deadline: float) -> None:
        """Read the receipts as they are written; the claimants that confirm do so."""
        unread: dict[str, ConfirmationEmail] = {}
        confirming: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=30, limits=CLIENT_LIMITS
        ) as client:
            while time.monotonic() < deadline:
                for email in await asyncio.to_thread(self.inbox.read_new):
                    unread[email.takedown_id] = email
                # An e-mail can be written before its filing's answer has been read here.
                for takedown_id in [i for i in unread if i in self.record.will_confirm]:
                    email = unread.pop(takedown_id)
                    if self.record.will_confirm[takedown_id]:
                        task = asyncio.create_task(self.confirm(client, email))
                        confirming.add(task)
                        task.add_done_callback(confirming.discard)
                await asyncio.sleep(0.2)
            await asyncio.gather(*confirming)

    async def _watch_removals(self, deadline: float) -> None:
        """Every article seen removed in the database is asked for at once: it must be 451."""
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=30, limits=CLIENT_LIMITS
        ) as client:
            while time.monotonic() < deadline:
                removed = await asyncio.to_thread(self.removed_ids)
                for article_id in removed.keys() - self.record.removed_seen.keys():
                    self.record.removed_seen[article_id] = time.monotonic()
                    self.record.watched += 1
                    started = time.perf_counter()
                    response = await client.get(f"/v1/articles/{article_id}")
                    self.record.note(
                        "watch: removed article",
                        response.status_code,
                        time.perf_counter() - started,
                    )
                    if response.status_code == 200:
                        self.record.violations.append(
                            f"article {article_id} answered 200 after its removal"
                        )
                await asyncio.sleep(0.5)

    async def run(self, duration: float, concurrency: int) -> float:
        """Run the mix; the seconds it actually ran."""
        started = time.monotonic()
        deadline = started + duration
        await asyncio.gather(
            self._watch_removals(deadline),
            self._confirm_claims(deadline),
            *(self._client_loop(deadline) for _ in range(concurrency)),
        )
        return time.monotonic() - started
