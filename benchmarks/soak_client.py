"""The soak's clients: httpx workers driving the reference app, and the ledger of what they saw.

Each worker is one ``httpx.AsyncClient`` (one keep-alive connection) looping
over a weighted mix of the app's routes until the deadline. A share of the
requests (a third by default) is sent on a connection of its own and abandoned
after a random short delay: the client closes the connection, so the server
sees it go away, mid-request when the answer has not come yet.

The ledger is the ground truth the final checks compare the database with:
a write answered 2xx with an id is *acknowledged* and must be there with the
data sent; a write refused with a 4xx must not be there; a write without a
clear answer (abandoned, no response, 5xx) may or may not be there.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# No request of the app may take this long, whatever the fault: every wait in
# the app is bounded by acquire_timeout (2 s) or a statement. A request that
# hits it is a hang, and fails the soak.
REQUEST_TIMEOUT = 30.0
# An abandoned request is cancelled this many seconds after it was sent. At
# pool saturation a request waits ~50-300 ms for a connection, a sign-up hashes
# for 50 ms or more (scrypt) and /slowusers/ sleeps SLOW_SECONDS, so the cancel
# lands while queued, between the handler's queries or during one.
ABORT_DELAY = (0.002, 0.3)
# After a 503 the worker waits a little, as a client honouring Retry-After
# would (shortened, so the fault windows stay busy).
BACKOFF_AFTER_503 = 0.05
# Users signed up before the workers start.
SEED_USERS = 4
# User ids that never exist (the ids are 32-bit; the run creates far fewer).
MISSING_OWNER = 2_000_000_000


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it."""

    kind: str
    worker: int
    started: float
    ended: float
    status: int | None
    """The HTTP status, or None when there was no response."""
    abandon: bool = False
    """The client meant to give up after a random delay (on a connection of its own)."""
    aborted: bool = False
    """It did: the request was cancelled before the answer came."""
    error: str = ""
    """Why there was no response, when not aborted (a reset, a client timeout)."""


@dataclass(frozen=True)
class SentUser:
    email: str
    password: str


@dataclass(frozen=True)
class SentItem:
    title: str
    description: str | None
    owner_id: int


@dataclass
class Ledger:
    """What the clients sent and what the app answered."""

    outcomes: list[Outcome] = field(default_factory=list)
    acked_users: dict[int, SentUser] = field(default_factory=dict)
    acked_items: dict[int, SentItem] = field(default_factory=dict)
    sent_emails: set[str] = field(default_factory=set)
    sent_titles: set[str] = field(default_factory=set)
    refused_emails: set[str] = field(default_factory=set)
    refused_titles: set[str] = field(default_factory=set)
    ambiguous_emails: set[str] = field(default_factory=set)
    ambiguous_titles: set[str] = field(default_factory=set)
    duplicate_probes: dict[str, int] = field(default_factory=dict)
    """Emails sent again after being acknowledged -> the acknowledged user's id."""
    violations: list[str] = field(default_factory=list)
    """Wrong answers seen during the run (an acknowledged row missing, wrong data)."""
    user_ids: list[int] = field(default_factory=list)  # acked, for random picks

    def ack_user(self, user_id: int, sent: SentUser) -> None:
        self.acked_users[user_id] = sent
        self.user_ids.append(user_id)

    def violation(self, what: str) -> None:
        self.violations.append(what)


# Statuses each kind of request may answer with; 503 (database unavailable or
# pool exhausted) is judged separately, against the fault windows.
EXPECTED: dict[str, frozenset[int]] = {
    "create_user": frozenset({201}),
    "create_item": frozenset({201}),
    "read_user": frozenset({200}),
    "list_users": frozenset({200}),
    "list_items": frozenset({200}),
    "slow_users": frozenset({200}),
    "duplicate_email": frozenset({400, 409}),
    "missing_owner": frozenset({404}),
    "short_password": frozenset({422}),
}


@dataclass
class Load:
    """What the clients share: the ledger, the clock, the deadline and a pause switch."""

    ledger: Ledger
    clock: Callable[[], float]
    stop_at: float
    abort_share: float
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    """Every email and title of the run is unique."""
    running: asyncio.Event = field(default_factory=asyncio.Event)
    """Cleared, the clients start no new request (the soak pauses to measure RSS)."""


class Client:
    """One soak client: a loop of requests on its own HTTP connection."""

    def __init__(self, worker: int, http: httpx.AsyncClient, rng: random.Random, load: Load,
                 *, abort_share: float | None = None) -> None:  # fmt: skip
        self.worker = worker
        self.http = http
        self.rng = rng
        self.load = load
        self.ledger = load.ledger
        self.abort_share = load.abort_share if abort_share is None else abort_share
        self.ops: dict[str, tuple[int, Callable[[], Awaitable[None]]]] = {
            "create_user": (4, self.create_user),
            "create_item": (25, self.create_item),
            "read_user": (20, self.read_user),
            "list_users": (8, self.list_users),
            "list_items": (10, self.list_items),
            "slow_users": (10, self.slow_users),
            "duplicate_email": (5, self.duplicate_email),
            "missing_owner": (5, self.missing_owner),
            "short_password": (3, self.short_password),
        }

    async def run(self) -> None:
        names = list(self.ops)
        weights = [self.ops[name][0] for name in names]
        while True:
            await self.load.running.wait()
            if self.load.clock() >= self.load.stop_at:
                return
            name = self.rng.choices(names, weights)[0]
            if not self.ledger.user_ids and name not in ("create_user", "short_password"):
                name = "create_user"  # the other writes and reads need a user
            await self.ops[name][1]()

    async def send(self, kind: str, method: str, url: str,
                   body: dict[str, Any] | None = None) -> httpx.Response | None:  # fmt: skip
        """Send one request, maybe abandon it, and record the outcome."""
        abandon = self.rng.random() < self.abort_share
        started = self.load.clock()
        record = functools.partial(self._record, kind, started, abandon=abandon)
        try:
            if abandon:
                response = await self._abandoned(method, url, body)
            else:
                response = await self.http.request(method, url, json=body)
        except TimeoutError:  # asyncio's: our own deadline (httpx raises its own types)
            record(None, aborted=True)
            return None
        except httpx.HTTPError as exc:
            record(None, error=f"{type(exc).__name__}: {exc}")
            return None
        record(response.status_code)
        if response.status_code == 503:
            await asyncio.sleep(BACKOFF_AFTER_503)
        return response

    async def _abandoned(self, method: str, url: str,
                         body: dict[str, Any] | None) -> httpx.Response:  # fmt: skip
        """Send on a connection of its own, cancelled after a random short delay.

        Closing the one-shot client closes the socket, so the server sees the
        client go away. It also keeps the worker's own client clean: httpcore
        1.0.9 can leak a pool slot when a request is cancelled
        (encode/httpcore#1093), which would stall that client for good.
        """
        after = self.rng.uniform(*ABORT_DELAY)
        # verify=False: plain HTTP on loopback; a TLS context costs ~35 ms to build.
        async with httpx.AsyncClient(base_url=self.http.base_url, timeout=REQUEST_TIMEOUT,
                                     verify=False) as http:  # fmt: skip
            async with asyncio.timeout(after):
                return await http.request(method, url, json=body)

    def _record(self, kind: str, started: float, status: int | None, *, abandon: bool,
                aborted: bool = False, error: str = "") -> None:  # fmt: skip
        ended = self.load.clock()
        outcome = Outcome(kind, self.worker, started, ended, status, abandon, aborted, error)
        self.ledger.outcomes.append(outcome)

    def _next(self) -> int:
        return next(self.load.numbers)

    def _some_user(self) -> int:
        return self.rng.choice(self.ledger.user_ids)

    async def create_user(self) -> None:
        n = self._next()
        sent = SentUser(f"soak-{n}@example.com", f"password-{n}-{self.rng.random():.6f}")
        self.ledger.sent_emails.add(sent.email)
        body = {"email": sent.email, "password": sent.password}
        response = await self.send("create_user", "POST", "/users/", body)
        if response is None or response.status_code >= 500:  # no clear answer
            self.ledger.ambiguous_emails.add(sent.email)
        elif response.status_code == 201:
            data = _body(response)
            if data.get("email") != sent.email or not isinstance(data.get("id"), int):
                self.ledger.violation(f"POST /users/ for {sent.email} answered {data}")
            else:
                self.ledger.ack_user(data["id"], sent)
        else:
            self.ledger.refused_emails.add(sent.email)

    async def create_item(self) -> None:
        n, owner = self._next(), self._some_user()
        sent = SentItem(f"soak item {n}", f"made by the soak, #{n}" if n % 2 else None, owner)
        self.ledger.sent_titles.add(sent.title)
        body = {"title": sent.title, "description": sent.description}
        response = await self.send("create_item", "POST", f"/users/{owner}/items/", body)
        if response is None or response.status_code >= 500:  # no clear answer
            self.ledger.ambiguous_titles.add(sent.title)
        elif response.status_code == 201:
            data = _body(response)
            answered = (data.get("title"), data.get("owner_id"), type(data.get("id")))
            if answered != (sent.title, owner, int):
                self.ledger.violation(f"POST /users/{owner}/items/ answered {data}")
            else:
                self.ledger.acked_items[data["id"]] = sent
        else:
            self.ledger.refused_titles.add(sent.title)
            if response.status_code == 404:
                self.ledger.violation(f"acknowledged user {owner} not found by POST item")

    async def read_user(self) -> None:
        user_id = self._some_user()
        response = await self.send("read_user", "GET", f"/users/{user_id}")
        if response is None or response.status_code >= 500:  # no clear answer
            return
        if response.status_code == 404:
            self.ledger.violation(f"acknowledged user {user_id} not found by GET")
        elif response.status_code == 200:
            email = self.ledger.acked_users[user_id].email
            data = _body(response)
            if (data.get("id"), data.get("email")) != (user_id, email):
                self.ledger.violation(f"GET /users/{user_id} answered another user: {data}")

    async def list_users(self) -> None:
        skip = self.rng.randrange(max(1, len(self.ledger.user_ids) - 50))
        await self.send("list_users", "GET", f"/users/?skip={skip}&limit=100")

    async def list_items(self) -> None:
        skip = self.rng.randrange(max(1, len(self.ledger.acked_items) - 50))
        await self.send("list_items", "GET", f"/items/?skip={skip}&limit=100")

    async def slow_users(self) -> None:
        await self.send("slow_users", "GET", "/slowusers/?limit=10")

    async def duplicate_email(self) -> None:
        user_id = self._some_user()
        email = self.ledger.acked_users[user_id].email
        self.ledger.duplicate_probes[email] = user_id
        body = {"email": email, "password": "another-password"}
        response = await self.send("duplicate_email", "POST", "/users/", body)
        if response is not None and response.status_code == 201:
            self.ledger.violation(f"a second user with email {email} was acknowledged")

    async def missing_owner(self) -> None:
        n = self._next()
        title = f"soak item {n}"
        self.ledger.sent_titles.add(title)
        response = await self.send("missing_owner", "POST", f"/users/{MISSING_OWNER + n}/items/",
                                   {"title": title})  # fmt: skip
        if response is None or response.status_code >= 500:  # no clear answer
            self.ledger.ambiguous_titles.add(title)
        else:
            self.ledger.refused_titles.add(title)

    async def short_password(self) -> None:
        n = self._next()
        email = f"soak-{n}@example.com"
        self.ledger.sent_emails.add(email)
        response = await self.send("short_password", "POST", "/users/",
                                   {"email": email, "password": "short"})  # fmt: skip
        if response is None or response.status_code >= 500:  # no clear answer
            self.ledger.ambiguous_emails.add(email)
        else:
            self.ledger.refused_emails.add(email)


def _body(response: httpx.Response) -> dict[str, Any]:
    """A JSON object answered, or {} (which no check accepts) when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def run_clients(base_url: str, load: Load, *, clients: int, seed: int) -> None:
    """Run ``clients`` workers until ``load.stop_at``; each finishes its request in flight."""

    async def one(worker: int) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT,
                                     limits=limits) as http:  # fmt: skip
            rng = random.Random(seed * 1000 + worker)
            await Client(worker, http, rng, load).run()

    load.running.set()
    await _seed_users(base_url, load, seed)
    async with asyncio.TaskGroup() as group:
        for worker in range(clients):
            group.create_task(one(worker))


async def _seed_users(base_url: str, load: Load, seed: int) -> None:
    """Sign a few users up one by one, so the workers do not all start with a sign-up:
    a dozen scrypt hashes at once would hold every connection for seconds."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        seeder = Client(-1, http, random.Random(seed), load, abort_share=0.0)
        for _ in range(3 * SEED_USERS):
            if len(load.ledger.user_ids) >= SEED_USERS:
                return
            await seeder.create_user()


def monotonic_clock() -> Callable[[], float]:
    """Seconds since now."""
    origin = time.monotonic()
    return lambda: time.monotonic() - origin
