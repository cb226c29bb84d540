"""The soak's verdicts: each check returns the failures it found, as sentences.

- statuses: no 5xx but 503, no 503 outside a fault window (plus grace), every
  request answered (a planned abort aside), no status a request should not get;
- writes: every acknowledged row in the database with the data sent, no row
  of a refused write, no row written twice or by nobody;
- leaks: with no request in flight (at the pause after warm-up, and once the
  clients stop), no connection checked out or waited for in the app's pools, no
  session of the app busy or inside a transaction, no more sessions on the
  server than the pools hold;
- memory: the server's RSS after the run within a bound of its RSS after warm-up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from examples.sql_app.security import verify_password

from .soak_client import EXPECTED, Ledger, Outcome
from .soak_server import Backend, FaultWindow

# Acknowledged users whose stored hash is checked against the password sent
# (scrypt costs ~50 ms each).
PASSWORDS_CHECKED = 5
MB = 1024 * 1024


def _examples(outcomes: list[Outcome], limit: int = 3) -> str:
    shown = [
        f"{o.kind} {o.status or o.error} at {o.started:.1f}-{o.ended:.1f} s"
        for o in outcomes[:limit]
    ]
    more = f" (+{len(outcomes) - limit} more)" if len(outcomes) > limit else ""
    return "; ".join(shown) + more


def in_fault_window(outcome: Outcome, windows: list[FaultWindow], grace: float) -> bool:
    """Whether the request overlapped a fault or the grace period after it."""
    return any(outcome.started <= w.end + grace and outcome.ended >= w.start for w in windows)


def check_statuses(ledger: Ledger, windows: list[FaultWindow], grace: float) -> list[str]:
    no_response, server_errors, stray_503, unexpected = [], [], [], []
    after_500 = closed_after_500(ledger.outcomes)
    for o in ledger.outcomes:
        if o.aborted or o in after_500:
            continue
        if o.status is None:
            no_response.append(o)
        elif o.status >= 500 and o.status != 503:
            server_errors.append(o)
        elif o.status == 503 and not in_fault_window(o, windows, grace):
            stray_503.append(o)
        elif o.status < 500 and o.status not in EXPECTED[o.kind]:
            unexpected.append(o)
    failures = []
    if server_errors:
        failures.append(f"{len(server_errors)} 5xx other than 503: {_examples(server_errors)}")
    if stray_503:
        failures.append(f"{len(stray_503)} 503 outside every fault window (+{grace:.0f} s): "
                        f"{_examples(stray_503)}")  # fmt: skip
    if no_response:
        failures.append(f"{len(no_response)} requests without a response: "
                        f"{_examples(no_response)}")  # fmt: skip
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected statuses: {_examples(unexpected)}")
    failures.extend(ledger.violations[:5])
    if len(ledger.violations) > 5:
        failures.append(f"... {len(ledger.violations) - 5} more wrong answers")
    return failures


def closed_after_500(outcomes: list[Outcome]) -> set[Outcome]:
    """Requests that found their keep-alive connection closed by the server because
    the worker's previous request on it ended in an unhandled exception (uvicorn
    sends the 500, then closes the connection). They are the 500's doing: it is
    the 500 that fails the run."""
    found: set[Outcome] = set()
    previous: dict[int, Outcome] = {}
    for o in sorted(outcomes, key=lambda o: o.started):
        if o.abandon:
            continue  # on a connection of its own
        before = previous.get(o.worker)
        if o.status is None and before is not None and before.status == 500:
            found.add(o)
        previous[o.worker] = o
    return found


@dataclass(frozen=True)
class Rows:
    """The app's tables as the database has them at the end."""

    users: dict[int, tuple[str, str, bool]]
    """id -> (email, hashed_password, is_active)"""
    items: dict[int, tuple[str, str | None, int]]
    """id -> (title, description, owner_id)"""


async def read_rows(conn: Any) -> Rows:
    users = await conn.fetch('SELECT id, email, hashed_password, is_active FROM "user"')
    items = await conn.fetch("SELECT id, title, description, owner_id FROM item")
    return Rows(
        {r["id"]: (r["email"], r["hashed_password"], r["is_active"]) for r in users},
        {r["id"]: (r["title"], r["description"], r["owner_id"]) for r in items},
    )


def check_users(ledger: Ledger, rows: Rows) -> list[str]:
    failures = []
    lost = [i for i in ledger.acked_users if i not in rows.users]
    if lost:
        failures.append(f"{len(lost)} acknowledged users lost: ids {sorted(lost)[:10]}")
    wrong = [
        i for i, sent in ledger.acked_users.items()
        if i in rows.users and (rows.users[i][0], rows.users[i][2]) != (sent.email, True)
    ]  # fmt: skip
    if wrong:
        failures.append(f"{len(wrong)} acknowledged users stored with other data: {wrong[:10]}")
    sample = sorted(i for i in ledger.acked_users if i in rows.users)[:PASSWORDS_CHECKED]
    bad_hash = [
        i for i in sample if not verify_password(ledger.acked_users[i].password, rows.users[i][1])
    ]
    if bad_hash:
        failures.append(f"stored password hashes do not match what was sent: ids {bad_hash}")
    by_email: dict[str, list[int]] = defaultdict(list)
    for user_id, (email, _, _) in rows.users.items():
        by_email[email].append(user_id)
    refused = sorted(e for e in ledger.refused_emails if e in by_email)
    if refused:
        failures.append(f"{len(refused)} users refused with a 4xx are stored: {refused[:5]}")
    unknown = sorted(e for e in by_email if e not in ledger.sent_emails)
    if unknown:
        failures.append(f"{len(unknown)} stored users nobody sent: {unknown[:5]}")
    doubled = {e: by_email[e] for e, user_id in ledger.duplicate_probes.items()
               if by_email.get(e, [user_id]) != [user_id]}  # fmt: skip
    if doubled:
        shown = dict(list(doubled.items())[:5])
        failures.append(f"re-sent emails stored other than once (email: ids): {shown}")
    return failures


def check_items(ledger: Ledger, rows: Rows) -> list[str]:
    failures = []
    lost = [i for i in ledger.acked_items if i not in rows.items]
    if lost:
        failures.append(f"{len(lost)} acknowledged items lost: ids {sorted(lost)[:10]}")
    wrong = [
        i for i, sent in ledger.acked_items.items()
        if i in rows.items and rows.items[i] != (sent.title, sent.description, sent.owner_id)
    ]  # fmt: skip
    if wrong:
        failures.append(f"{len(wrong)} acknowledged items stored with other data: {wrong[:10]}")
    titles = Counter(title for title, _, _ in rows.items.values())
    twice = sorted(t for t, n in titles.items() if n > 1)
    if twice:
        failures.append(f"{len(twice)} items stored twice (a write run twice): {twice[:5]}")
    refused = sorted(t for t in ledger.refused_titles if t in titles)
    if refused:
        failures.append(f"{len(refused)} items refused with a 4xx are stored: {refused[:5]}")
    unknown = sorted(t for t in titles if t not in ledger.sent_titles)
    if unknown:
        failures.append(f"{len(unknown)} stored items nobody sent: {unknown[:5]}")
    return failures


@dataclass(frozen=True)
class Settled:
    """The app with no request in flight: its pools, its sessions, its memory."""

    at: float
    pools: list[dict[str, Any]] | None
    backends: list[Backend] | None
    waited: float
    """Seconds it took for the app to become quiet (or the bound, when it did not)."""
    rss: int | None


def is_quiet(pools: list[dict[str, Any]] | None, backends: list[Backend] | None) -> bool:
    return not leak_failures(Settled(0.0, pools, backends, 0.0, None))


def leak_failures(settled: Settled) -> list[str]:
    failures = []
    if settled.pools is None:
        failures.append("the app's /health did not answer after the run")
    else:
        busy = [p for p in settled.pools if p["in_use"] or p["waiting"]]
        if busy:
            failures.append(f"pool connections still checked out after the run: {busy}")
    if settled.backends is None:
        failures.append("pg_stat_activity could not be read after the run")
    else:
        busy_sessions = [b for b in settled.backends if b.state != "idle"]
        if busy_sessions:
            shown = [(b.pid, b.state, b.query) for b in busy_sessions[:5]]
            failures.append(f"{len(busy_sessions)} sessions of the app not idle after the run "
                            f"(pid, state, last query): {shown}")  # fmt: skip
        if settled.pools is not None:
            known = sum(p["size"] for p in settled.pools)
            if len(settled.backends) > known:
                failures.append(
                    f"{len(settled.backends)} sessions of the app on the server "
                    f"but its pools hold {known}: connections leaked outside the pool"
                )
    return failures


@dataclass(frozen=True)
class RssVerdict:
    baseline: int
    end: int
    bound: int

    @property
    def ok(self) -> bool:
        return self.end <= self.bound


def check_rss(paused: Settled, settled: Settled) -> tuple[RssVerdict | None, list[str]]:
    """The server's RSS after warm-up against its RSS at the end, both measured with
    no request in flight (at the pause and after the run), so neither catches a
    sign-up's 16 MiB scrypt buffer in passing (under load, RSS swings by ~40 MB).

    The bound is the baseline + 10% + 10 MB. What grows without a leak: the
    bounded caches (SQL, plans, row layouts) filling with the app's query
    shapes, asyncpg's statement cache on each replacement connection (the pool
    holds 4 at a time), heap fragmentation. Measured on this soak: +3 to +5 MB
    in 30 s runs, +7 MB in 120 s, +6 MB in 300 s, flat in the last minutes.
    What it catches: after the warm-up a 5-minute run makes ~10,000 requests,
    so a leak of ~1 KB a request (anything kept per request or per connection:
    a scope, a transaction stack, a response) passes the bound; the 30-second
    run, ~1,000 requests, only catches ~10 KB a request. The slow per-query
    cache growth of the issue (~2 KB per select with an expression column, on
    ~40% of the requests here) is at the edge of a 5-minute run: the cache
    bound tests (100,000 queries) are the place for it.
    """
    if paused.rss is None or settled.rss is None:
        return None, ["the server's RSS could not be read"]
    verdict = RssVerdict(paused.rss, settled.rss, int(paused.rss * 1.1) + 10 * MB)
    if verdict.ok:
        return verdict, []
    return verdict, [f"RSS grew from {paused.rss / MB:.1f} MB after warm-up to "
                     f"{settled.rss / MB:.1f} MB at the end, past the bound of "
                     f"{verdict.bound / MB:.1f} MB"]  # fmt: skip
