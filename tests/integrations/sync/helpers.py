"""What the sync framework tests share: a database for sync tests, a real
threaded WSGI server (waitress on 127.0.0.1), concurrent clients, and the
checks made from outside the library once the requests are done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from waitress.server import create_server  # type: ignore[import-untyped]

from ...conftest import AnyDatabase, _reset_tables, assert_no_leaks, make_database
from ...harness import Outside
from ...models import MODELS, User, bind_models
from ..support import in_use, opened

__all__ = [
    "MODELS",
    "Boom",
    "Build",
    "Probe",
    "User",
    "Views",
    "assert_clean",
    "check_atomic",
    "check_concurrency",
    "check_exception",
    "count_outside",
    "get_many",
    "in_use",
    "opened",
    "serve",
    "sync_database",
]

WAIT = 10.0  # seconds any one wait may take


@contextmanager
def sync_database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **options: Any
) -> Iterator[AnyDatabase]:
    """A database with fresh test tables, for sync tests; leak-checked at the end."""
    db = make_database(backend, request, tmp_path, **options)
    bind_models(db)
    _reset_tables(db)
    try:
        yield db
        assert_clean(db)
    finally:
        db.close_all()


def assert_clean(db: AnyDatabase, timeout: float = 3.0) -> None:
    """Nothing leaked: every connection is back in its pool, and the server
    sees no session inside a transaction or mid-statement."""
    deadline = time.monotonic() + timeout
    outside = Outside(db)
    try:
        while True:
            busy = outside.busy_sessions()
            if not busy and in_use(db) == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"leaked: in_use={in_use(db)}, busy sessions={busy}")
            time.sleep(0.02)
    finally:
        outside.close()
    assert_no_leaks(db)


def count_outside(db: AnyDatabase, username: str) -> int:
    """Committed ``User`` rows named ``username``, as the server sees them."""
    outside = Outside(db)
    try:
        table = '"user"' if outside.kind != "mysql" else "`user`"
        sql = f"SELECT count(*) FROM {table} WHERE username = ?"
        return int(outside.query(sql, (username,))[0][0])
    finally:
        outside.close()


@contextmanager
def serve(app: Any, threads: int = 4) -> Iterator[str]:
    """Serve the WSGI ``app`` with waitress on 127.0.0.1 (a free port) in a
    thread; yield its base URL; stop it at the end."""
    server: Any = create_server(app, host="127.0.0.1", port=0, threads=threads)
    stopping = threading.Event()

    def run() -> None:
        # Poll in short rounds and close from this thread, so the sockets
        # are never closed under a running poll.
        while not stopping.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)
        server.task_dispatcher.shutdown(timeout=WAIT)
        for channel in list(server._map.values()):
            channel.handle_close()
        server.close()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopping.set()
        runner.join(WAIT)
        assert not runner.is_alive(), "the test server did not stop"


def get_many(urls: list[str], method: str = "GET") -> list[httpx.Response]:
    """Send every request at once, each from its own client thread."""

    def one(url: str) -> httpx.Response:
        return httpx.request(method, url, timeout=WAIT)

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return list(pool.map(one, urls))


class Probe:
    """What a view calls to prove requests never share a connection.

    ``probe()`` takes the request's connection (inside a transaction, so it
    is kept), waits until ``parties`` requests hold theirs at the same time,
    and returns its connection's identity and the pool's ``in_use`` then.
    """

    def __init__(self, db: AnyDatabase, parties: int) -> None:
        self.db = db
        self.barrier = threading.Barrier(parties, timeout=WAIT)
        self.seen: list[tuple[int, int]] = []

    def probe(self) -> tuple[int, int]:
        with self.db.atomic():
            User.select().count()
            conn = id(self.db.connection())
            self.barrier.wait()
            seen = (conn, in_use(self.db))
            self.barrier.wait()  # nobody lets go before all have looked
        self.seen.append(seen)
        return seen

    def check(self, parties: int) -> None:
        """Every request had its own connection, all of them in use at once."""
        assert len(self.seen) == parties
        assert len({conn for conn, _ in self.seen}) == parties  # never shared
        assert all(peak == parties for _, peak in self.seen)


class Boom(Exception):
    """A view's own (non-database) failure."""


class Views:
    """The bodies of the views every framework's test app routes to.

    - ``probe()``: see :class:`Probe`;
    - ``boom()``: opens a transaction, writes, and raises (no clean-up);
    - ``create(name)``: writes a user;
    - ``fail(name)``: writes a user, then raises.
    """

    def __init__(self, db: AnyDatabase, parties: int = 4) -> None:
        self.db = db
        self.probe_ = Probe(db, parties)

    def probe(self) -> str:
        self.probe_.probe()
        return "ok"

    def boom(self) -> str:
        self.db.begin()
        User.create(username="boom")
        raise Boom("boom")

    def create(self, name: str) -> str:
        User.create(username=name)
        return "created"

    def fail(self, name: str) -> str:
        User.create(username=name)
        raise Boom("fail")


Build = Callable[[Views, bool], Any]
"""``build(views, atomic)``: the framework's WSGI app, routing ``/probe``,
``/boom``, ``/create/<name>`` and ``/fail/<name>`` to ``views``, wrapped in the
database middleware (``atomic`` passed on)."""


def check_concurrency(db: AnyDatabase, build: Build, parties: int = 4) -> None:
    """Concurrent requests through a real server each get their own
    connection, all at once; nothing is left behind."""
    views = Views(db, parties)
    with serve(build(views, False), threads=parties) as url:
        responses = get_many([url + "/probe"] * parties)
    assert [r.status_code for r in responses] == [200] * parties, responses[0].text
    views.probe_.check(parties)
    assert_clean(db)


def check_exception(db: AnyDatabase, build: Build) -> None:
    """A view that raises inside a transaction it opened: the framework's
    500, the transaction rolled back, the connection back in the pool."""
    with serve(build(Views(db), False)) as url:
        response = httpx.get(url + "/boom", timeout=WAIT)
    assert response.status_code == 500
    assert "INSERT" not in response.text
    assert_clean(db)
    assert count_outside(db, "boom") == 0


def check_atomic(db: AnyDatabase, build: Build) -> None:
    """With the per-request transaction: a success commits, a raise rolls back."""
    with serve(build(Views(db), True)) as url:
        created = httpx.get(url + "/create/kept", timeout=WAIT)
        failed = httpx.get(url + "/fail/lost", timeout=WAIT)
    assert created.status_code == 200, created.text
    assert created.text == "created"
    assert failed.status_code == 500
    assert_clean(db)
    assert count_outside(db, "kept") == 1
    assert count_outside(db, "lost") == 0
