"""The soak: the reference app under uvicorn on PostgreSQL, at pool saturation, under faults.

    python -m benchmarks.soak [--seconds 300] [--seed 1]      (make soak SOAK_SECONDS=300)

A throwaway PostgreSQL (tests/servers.py) and the reference app
(examples/sql_app) in its own uvicorn process with a small pool (4
connections, acquire_timeout 2 s). Three times as many clients as
connections sign users up, add items, read them back, list them and hold
connections on /slowusers/; a third of the requests are abandoned
mid-request. Meanwhile, every 5-10 s, every session of the app is killed with
``pg_terminate_backend``, and once the server is restarted (down 1.5 s).

It fails (exit code 1) on any lost acknowledged write, any row a 4xx refused,
any 5xx other than 503, any 503 outside a fault window and its grace period,
any request left without a response, any connection still checked out or any
session of the app busy once the clients stop, and RSS growth past the bound
given in ``soak_checks.check_rss``. It prints a report either way; exit code
2 means PostgreSQL could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from tests.servers import PostgresServer, ServerUnavailable

from . import soak_checks as checks
from .soak_client import REQUEST_TIMEOUT, Ledger, Load, Outcome, monotonic_clock, run_clients
from .soak_server import AppProcess, FaultWindow, PgSide, Sample, Sampler, fault_plan, inject

MB = 1024 * 1024
SETTLE_SECONDS = 10.0
# The first 20% of the run: the pool fills, the caches warm up; no fault yet.
WARM_UP = 0.2
POOL_FIELDS = ("size", "idle", "in_use", "waiting", "opened", "closed", "timeouts")


@dataclass(frozen=True, kw_only=True)
class Settings:
    seconds: float = 300.0
    clients: int = 12
    """Three per pool connection: the pool is saturated, requests queue for it."""
    pool_size: int = 4
    acquire_timeout: float = 2.0
    slow_seconds: float = 0.1
    """How long /slowusers/ holds its connection."""
    abort_share: float = 1 / 3
    restart_down: float = 1.5
    seed: int = 1
    sample_every: float = 1.0

    @property
    def grace(self) -> float:
        """How long after a fault a 503 is still excused: a request that queued for a
        connection during the fault gives up acquire_timeout later, and a connection
        killed while idle is found dead by its next user, at most a request later."""
        return self.acquire_timeout + 2.0

    def database_url(self, server: PostgresServer) -> str:
        p = server.connect_params
        return (f"postgresql://{p['user']}@{p['host']}:{p['port']}/{server.database}"
                f"?pool_size={self.pool_size}&acquire_timeout={self.acquire_timeout}")  # fmt: skip


@dataclass
class Run:
    """Everything a soak run saw, and its verdict."""

    settings: Settings
    ledger: Ledger = field(default_factory=Ledger)
    windows: list[FaultWindow] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    paused: checks.Settled | None = None
    """The look at the app at the end of the warm-up, the clients paused."""
    settled: checks.Settled | None = None
    """The look at the app once the clients have stopped."""
    rows: checks.Rows | None = None
    rss: checks.RssVerdict | None = None
    app_exit: int | None = None
    logged_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def soak(server: PostgresServer, settings: Settings, workdir: Path) -> Run:
    run = Run(settings)
    app = await asyncio.to_thread(
        AppProcess.start, settings.database_url(server), workdir,
        pool_size=settings.pool_size, slow_seconds=settings.slow_seconds,
    )  # fmt: skip
    pg = PgSide(server)
    try:
        await _drive(app, pg, run)
    finally:
        run.app_exit = await asyncio.to_thread(app.stop)
        run.logged_errors = app.logged_errors()
        pg.close()
    run.rows = await _read_rows(server)
    _judge(run)
    return run


async def _drive(app: AppProcess, pg: PgSide, run: Run) -> None:
    """Load and faults for ``settings.seconds``, with a pause after the warm-up, then
    let the app settle."""
    settings, clock = run.settings, monotonic_clock()
    load = Load(run.ledger, clock, settings.seconds, settings.abort_share)
    sampler = Sampler(app, pg, clock, settings.sample_every, run.samples)
    warm = WARM_UP * settings.seconds
    # The first fault comes after the pause: the baseline is taken with no fault yet.
    plan = fault_plan(settings.seconds, random.Random(settings.seed), first_at=warm + 3.0,
                      restart_down=settings.restart_down, grace=settings.grace)  # fmt: skip
    faults = asyncio.create_task(
        inject(plan, pg, clock, run.windows, restart_down=settings.restart_down)
    )
    clients = asyncio.create_task(
        run_clients(app.base_url, load, clients=settings.clients, seed=settings.seed)
    )
    tasks = [asyncio.create_task(sampler.run()), faults, clients]
    try:
        await asyncio.sleep(warm)
        load.running.clear()
        run.paused = await _settle(app, pg, clock)
        load.running.set()
        await asyncio.wait_for(clients, settings.seconds + REQUEST_TIMEOUT)
        await asyncio.wait_for(faults, 30)  # the plan ends at 75% of the run
        run.settled = await _settle(app, pg, clock)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _settle(app: AppProcess, pg: PgSide, clock: Callable[[], float]) -> checks.Settled:
    """Wait (bounded) until no request is in the app and its pools and sessions are
    quiet; then look at them, and at the server's RSS."""
    started = clock()
    async with httpx.AsyncClient() as http:
        while True:
            pools = await app.pool_stats(http)
            backends = await pg.backends()
            waited = clock() - started
            if checks.is_quiet(pools, backends) or waited > SETTLE_SECONDS:
                break
            await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)  # requests abandoned by their clients may still be finishing
    return checks.Settled(started, pools, backends, waited, app.rss_bytes())


async def _read_rows(server: PostgresServer) -> checks.Rows:
    p = server.connect_params
    conn = await asyncpg.connect(host=p["host"], port=p["port"], user=p["user"],
                                 database=server.database, timeout=10)  # fmt: skip
    try:
        return await checks.read_rows(conn)
    finally:
        await conn.close()


def _judge(run: Run) -> None:
    settings, ledger = run.settings, run.ledger
    run.failures += checks.check_statuses(ledger, run.windows, settings.grace)
    assert run.rows is not None
    run.failures += checks.check_users(ledger, run.rows)
    run.failures += checks.check_items(ledger, run.rows)
    if run.paused is not None:
        run.failures += [f"at the warm-up pause: {f}" for f in checks.leak_failures(run.paused)]
    if run.settled is not None:
        run.failures += checks.leak_failures(run.settled)
    if run.paused is not None and run.settled is not None:
        run.rss, memory = checks.check_rss(run.paused, run.settled)
        run.failures += memory
    if run.app_exit != 0:
        run.failures.append(f"uvicorn exited with code {run.app_exit} at shutdown")
    if not any(w.kind == "restart" for w in run.windows):
        run.failures.append("the server restart was not injected")


# --- the report ---------------------------------------------------------------------------


def report(run: Run) -> str:
    sections = [_header(run), _requests(run), _latency(run), _writes(run), _faults(run),
                _pools(run), _memory(run), _app(run), _verdict(run)]  # fmt: skip
    return "\n\n".join(sections)


def _header(run: Run) -> str:
    s = run.settings
    return (f"soak: {s.seconds:.0f} s on PostgreSQL, uvicorn + examples/sql_app, "
            f"pool_size={s.pool_size}, acquire_timeout={s.acquire_timeout:.1f} s, "
            f"{s.clients} clients, {s.abort_share:.0%} abandoned mid-request, "
            f"SLOW_SECONDS={s.slow_seconds}, seed {s.seed}")  # fmt: skip


def _status_label(o: Outcome) -> str:
    if o.aborted:
        return "aborted"
    return str(o.status) if o.status is not None else "no response"


def _requests(run: Run) -> str:
    outcomes = run.ledger.outcomes
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        by_kind[o.kind][_status_label(o)] += 1
    overall = Counter(_status_label(o) for o in outcomes)
    abandon = sum(1 for o in outcomes if o.abandon)
    after_500 = len(checks.closed_after_500(outcomes))
    lines = [
        f"requests: {len(outcomes)} ({len(outcomes) / run.settings.seconds:.0f}/s); "
        f"by status: {_counts(overall)}",
        f"  abandoned by the client: {abandon} planned ({abandon / max(1, len(outcomes)):.0%}),"
        f" {overall['aborted']} cancelled before their answer came",
    ]  # fmt: skip
    if after_500:
        lines.append(
            f"  {after_500} without a response because uvicorn closed the connection "
            "after a 500 (counted under the 500)"
        )
    for kind, counts in sorted(by_kind.items()):
        lines.append(f"  {kind:<16}{sum(counts.values()):>7}  {_counts(counts)}")
    return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(counter.items()))


def _latency(run: Run) -> str:
    done = [o for o in run.ledger.outcomes if not o.aborted and o.status is not None]
    calm: list[Outcome] = []
    stormy: list[Outcome] = []
    for o in done:
        in_fault = checks.in_fault_window(o, run.windows, run.settings.grace)
        (stormy if in_fault else calm).append(o)

    def figures(outcomes: list[Outcome]) -> str:
        if len(outcomes) < 2:
            return "n/a"
        ms = sorted(1000 * (o.ended - o.started) for o in outcomes)
        p99 = statistics.quantiles(ms, n=100)[98]
        return f"p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms"

    return (f"latency (answered requests): outside fault windows {figures(calm)}; "
            f"in them {figures(stormy)}")  # fmt: skip


def _writes(run: Run) -> str:
    ledger, rows = run.ledger, run.rows
    if rows is None:
        return "writes: the database was not read"
    emails = {email for email, _, _ in rows.users.values()}
    titles = {title for title, _, _ in rows.items.values()}
    users_found = sum(1 for i in ledger.acked_users if i in rows.users)
    items_found = sum(1 for i in ledger.acked_items if i in rows.items)
    return "\n".join([
        f"writes: users acknowledged {len(ledger.acked_users)}, found {users_found}; "
        f"items acknowledged {len(ledger.acked_items)}, found {items_found}",
        f"  ambiguous (abandoned, no answer or 5xx), found / sent: users "
        f"{len(ledger.ambiguous_emails & emails)} / {len(ledger.ambiguous_emails)}, items "
        f"{len(ledger.ambiguous_titles & titles)} / {len(ledger.ambiguous_titles)}",
        f"  refused with a 4xx, found / sent: users {len(ledger.refused_emails & emails)} / "
        f"{len(ledger.refused_emails)}, items {len(ledger.refused_titles & titles)} / "
        f"{len(ledger.refused_titles)}; duplicate emails probed {len(ledger.duplicate_probes)}",
        f"  rows in the database: {len(rows.users)} users, {len(rows.items)} items",
    ])  # fmt: skip


def _faults(run: Run) -> str:
    lines = [f"faults ({len(run.windows)}, each excusing 503s for {run.settings.grace:.0f} s "
             "after it):"]  # fmt: skip
    for w in run.windows:
        lines.append(f"  {w.start:6.1f}-{w.end:6.1f} s  {w.kind:<9} {w.detail}")
    return "\n".join(lines)


def _pools(run: Run) -> str:
    pooled = [s.pools[0] for s in run.samples if s.pools]
    lines = []
    if pooled:
        full = sum(1 for p in pooled if p["in_use"] >= p["pool_size"])
        lines.append(f"pool (GET /health, {len(pooled)} samples): all connections in use in "
                     f"{full / len(pooled):.0%} of samples, waiting up to "
                     f"{max(p['waiting'] for p in pooled)}")  # fmt: skip
    for label, look in (("at the warm-up pause", run.paused), ("after the run", run.settled)):
        if look is None:
            continue
        states = Counter(b.state for b in look.backends or ())
        pools = [{k: p[k] for k in POOL_FIELDS} for p in look.pools or ()]
        lines.append(f"  {label} (quiet after {look.waited:.1f} s): pools {pools}; "
                     f"the app's sessions: {_counts(states) or 'none'}")  # fmt: skip
    busiest = Counter[str]()
    for s in run.samples:
        for state, n in (s.states or {}).items():
            busiest[state] = max(busiest[state], n)
    lines.append(f"  most sessions seen at once, by state: {_counts(busiest)}")
    return "\n".join(lines)


def _memory(run: Run) -> str:
    measured = [s for s in run.samples if s.rss is not None]
    step = max(1, len(measured) // 12)
    shown = ", ".join(f"{s.at:.0f}s {s.rss / MB:.0f}" for s in measured[::step]
                      if s.rss is not None)  # fmt: skip
    lines = [f"RSS of uvicorn under load (MB, every {run.settings.sample_every:.0f} s): {shown}"]
    if run.rss is not None:
        lines.append(
            f"  with no request in flight: after warm-up {run.rss.baseline / MB:.1f} MB,"
            f" at the end {run.rss.end / MB:.1f} MB (bound {run.rss.bound / MB:.1f} MB)"
        )
    return "\n".join(lines)


def _app(run: Run) -> str:
    # One line per kind of entry, whatever the request: "... on GET /users/7: ..." -> "...: ...".
    kinds = Counter(re.sub(r" on [A-Z]+ /\S*:", ":", entry) for entry in run.logged_errors)
    lines = [f"uvicorn: exit code {run.app_exit}; its log, {len(run.logged_errors)} entries:"]
    for entry, n in kinds.most_common(10):
        lines.append(f"  {n:>5} x {entry[:220]}")
    if len(kinds) > 10:
        lines.append(f"  ... and {len(kinds) - 10} other kinds")
    return "\n".join(lines)


def _verdict(run: Run) -> str:
    if not run.failures:
        return "PASSED"
    return "FAILED:\n" + "\n".join(f"  - {failure}" for failure in run.failures)


# --- the command --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                     description=(__doc__ or "").split("\n")[0])  # fmt: skip
    default_seconds = float(os.environ.get("SOAK_SECONDS") or 300)
    parser.add_argument(
        "--seconds",
        type=float,
        default=default_seconds,
        help="how long the clients run (default: $SOAK_SECONDS or 300)",
    )
    parser.add_argument("--clients", type=int, default=Settings.clients)
    parser.add_argument("--pool-size", type=int, default=Settings.pool_size)
    parser.add_argument("--seed", type=int, default=Settings.seed,
                        help="the fault plan's and the clients' random seed")  # fmt: skip
    args = parser.parse_args(argv)
    if args.seconds < 20:
        parser.error("--seconds must be at least 20 (warm-up, faults and a quiet end)")
    return Settings(seconds=args.seconds, clients=args.clients, pool_size=args.pool_size,
                    seed=args.seed)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        print(f"soak: cannot start PostgreSQL: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fastpeewee-soak-"))
    try:
        run = asyncio.run(soak(server, settings, workdir))
    finally:
        server.stop()
    print(report(run), flush=True)
    if run.failures:
        print(f"\nuvicorn's log is kept in {workdir / 'uvicorn.log'}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
