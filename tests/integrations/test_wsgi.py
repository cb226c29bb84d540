"""WSGIDatabaseMiddleware and db.release_thread(): a sync request's leftovers
are cleaned up, atomic requests commit or roll back, on every backend.

The middleware is called the way a WSGI server calls it (call, iterate,
close) from this test's thread, which has no event loop, as a server's worker
thread; concurrency goes through a real threaded server (waitress).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastpeewee import WSGIDatabaseMiddleware

from .sync.helpers import (
    Probe,
    User,
    assert_clean,
    count_outside,
    get_many,
    in_use,
    opened,
    serve,
    sync_database,
)

Environ = dict[str, Any]


@pytest.fixture
def sdb(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with sync_database(backend, request, tmp_path, pool_size=6) as db:
        yield db


class Boom(Exception):
    pass


def no_start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
    """A start_response that drops what it is given."""
    return lambda data: None


def call(app: Any, path: str = "/") -> tuple[str, bytes]:
    """One request, as a WSGI server makes it: call, iterate the body, close it."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        statuses.append(status)
        return lambda data: None

    body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response)
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return statuses[-1], data


def wsgi_app(db: Any, views: dict[str, Callable[[], str]]) -> Any:
    """A bare WSGI app: ``views[path]()`` returns the status line (the body is "ok")."""

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        status = views[environ["PATH_INFO"]]()
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


# -- db.release_thread() --------------------------------------------------------


def test_release_thread_with_nothing_held_returns_false(sdb):
    assert sdb.release_thread() is False  # this thread never touched the database
    assert User.select().count() == 0  # a borrowed connection, given back at once
    assert in_use(sdb) == 0
    assert sdb.release_thread() is False


def test_release_thread_returns_a_connection_held_by_connect(sdb):
    sdb.connect()
    User.select().count()
    assert in_use(sdb) == 1
    assert sdb.release_thread() is True
    assert in_use(sdb) == 0
    assert sdb.is_closed()
    sdb.connect()  # the classic hooks work again afterwards
    sdb.close()


def test_release_thread_rolls_back_an_open_transaction(sdb, caplog):
    sdb.begin()
    User.create(username="left-open")
    assert in_use(sdb) == 1
    with caplog.at_level(logging.WARNING, logger="fastpeewee.state"):
        assert sdb.release_thread() is True
    assert "left open" in caplog.text
    assert in_use(sdb) == 0
    assert count_outside(sdb, "left-open") == 0  # rolled back, not committed
    assert User.create(username="after")  # the thread's next work runs in autocommit
    assert count_outside(sdb, "after") == 1


def test_release_thread_only_touches_its_own_thread(sdb):
    held = threading.Event()
    done = threading.Event()

    def other() -> None:
        sdb.connect()
        User.select().count()
        held.set()
        done.wait(10)
        sdb.close()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert held.wait(10)
        assert sdb.release_thread() is False  # this thread holds nothing
        assert in_use(sdb) == 1  # the other thread's connection is still its own
    finally:
        done.set()
        thread.join(10)
    assert in_use(sdb) == 0


# -- leftovers ------------------------------------------------------------------


def test_a_connection_kept_by_connect_goes_back_after_the_response(sdb):
    def keep() -> str:
        sdb.connect()  # a before_request hook whose teardown never ran
        User.create(username="kept")
        return "200 OK"

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": keep}), sdb)
    assert call(app) == ("200 OK", b"ok")
    assert in_use(sdb) == 0
    assert sdb.is_closed()
    assert count_outside(sdb, "kept") == 1  # autocommit: nothing to roll back


def test_an_open_transaction_is_rolled_back_after_the_response(sdb, caplog):
    def forget() -> str:
        sdb.begin()
        User.create(username="uncommitted")
        return "200 OK"

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": forget}), sdb)
    with caplog.at_level(logging.WARNING, logger="fastpeewee.state"):
        assert call(app)[0] == "200 OK"
    assert "rolling it back" in caplog.text
    assert_clean(sdb)  # no session idle in transaction, in_use 0
    assert count_outside(sdb, "uncommitted") == 0


def test_an_exception_leaves_no_open_transaction(sdb):
    def boom() -> str:
        sdb.begin()
        User.create(username="boom")
        raise Boom

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": boom}), sdb)
    with pytest.raises(Boom):
        call(app)
    assert_clean(sdb)
    assert count_outside(sdb, "boom") == 0


def test_a_request_that_never_queries_takes_no_connection(sdb):
    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": lambda: "200 OK"}), sdb)
    before = opened(sdb)
    assert call(app)[0] == "200 OK"
    assert opened(sdb) == before
    assert in_use(sdb) == 0


# -- atomic=True ----------------------------------------------------------------


def test_atomic_commits_before_the_response_starts(sdb):
    seen: list[int] = []

    def create() -> str:
        User.create(username="committed")
        return "201 Created"

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        status = create()
        start_response(status, [])
        seen.append(count_outside(sdb, "committed"))  # already visible from outside
        return [b"ok"]

    assert call(WSGIDatabaseMiddleware(app, sdb, atomic=True))[0] == "201 Created"
    assert seen == [1]
    assert count_outside(sdb, "committed") == 1
    assert_clean(sdb)


@pytest.mark.parametrize("status", ["400 Bad Request", "404 Not Found", "409 Conflict"])
def test_atomic_rolls_back_a_4xx_response(sdb, status):
    # The rule of every adapter (core.commits): an error status rolls back.
    def refused() -> str:
        User.create(username="audit")
        return status

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": refused}), sdb, atomic=True)
    assert call(app)[0] == status
    assert count_outside(sdb, "audit") == 0
    assert_clean(sdb)


def test_atomic_commits_a_redirect(sdb):
    def moved() -> str:
        User.create(username="audit")
        return "303 See Other"

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": moved}), sdb, atomic=True)
    assert call(app)[0] == "303 See Other"
    assert count_outside(sdb, "audit") == 1


def test_atomic_rolls_back_on_an_exception(sdb):
    def boom() -> str:
        User.create(username="boom")
        raise Boom

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": boom}), sdb, atomic=True)
    with pytest.raises(Boom):
        call(app)
    assert_clean(sdb)
    assert count_outside(sdb, "boom") == 0


def test_atomic_rolls_back_on_a_5xx_response(sdb):
    def fail() -> str:
        User.create(username="failed")
        return "503 Service Unavailable"

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": fail}), sdb, atomic=True)
    assert call(app)[0] == "503 Service Unavailable"
    assert_clean(sdb)
    assert count_outside(sdb, "failed") == 0


def test_atomic_rolls_back_when_the_app_starts_no_response(sdb):
    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        User.create(username="no-response")
        return []

    body = WSGIDatabaseMiddleware(app, sdb, atomic=True)({}, no_start)
    assert list(body) == []
    body.close()  # type: ignore[attr-defined]
    assert_clean(sdb)
    assert count_outside(sdb, "no-response") == 0


@pytest.mark.backends("sqlite", "postgres")  # MySQL has no deferred constraints
def test_a_failed_commit_is_an_error_never_a_200(backend, request, tmp_path):
    # A deferred foreign key is checked at COMMIT: the commit itself fails.
    options: dict[str, Any] = {"pool_size": 6}
    if backend == "sqlite":
        options["pragmas"] = {"foreign_keys": 1}
    with sync_database(backend, request, tmp_path, **options) as db:
        db.execute_sql("DROP TABLE IF EXISTS fw_child")
        db.execute_sql("DROP TABLE IF EXISTS fw_parent")
        db.execute_sql("CREATE TABLE fw_parent (id INTEGER PRIMARY KEY)")
        db.execute_sql(
            "CREATE TABLE fw_child (id INTEGER PRIMARY KEY, parent_id INTEGER "
            "REFERENCES fw_parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )

        def orphan() -> str:
            User.create(username="orphan-owner")
            db.execute_sql("INSERT INTO fw_child (id, parent_id) VALUES (1, 999)")
            return "200 OK"

        app = WSGIDatabaseMiddleware(wsgi_app(db, {"/": orphan}), db, atomic=True)
        with serve(app) as url:
            response = httpx.get(url + "/", timeout=10)
        assert response.status_code == 500  # the server's answer to the raised commit
        assert b"fw_child" not in response.content and b"INSERT" not in response.content
        assert count_outside(db, "orphan-owner") == 0


# -- streaming and concurrency --------------------------------------------------


def test_a_streaming_body_keeps_its_connection_until_close(sdb):
    during: list[int] = []

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        sdb.connect()
        for i in range(3):
            User.create(username=f"chunk-{i}")
            during.append(in_use(sdb))
            yield b"chunk"

    body = WSGIDatabaseMiddleware(app, sdb)({}, no_start)
    assert in_use(sdb) == 0  # nothing ran yet: a generator body runs while iterated
    assert b"".join(body) == b"chunk" * 3
    assert during == [1, 1, 1]
    assert in_use(sdb) == 1  # iteration is over, but the server has not closed it
    body.close()  # type: ignore[attr-defined]
    assert in_use(sdb) == 0
    assert sdb.is_closed()


def test_close_releases_even_when_the_bodys_own_close_raises(sdb):
    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"x"

        def close(self) -> None:
            raise Boom

    def app(environ: Environ, start_response: Any) -> Body:
        sdb.connect()
        User.select().count()
        start_response("200 OK", [])
        return Body()

    body = WSGIDatabaseMiddleware(app, sdb)({}, no_start)
    assert list(body) == [b"x"]
    with pytest.raises(Boom):
        body.close()  # type: ignore[attr-defined]
    assert in_use(sdb) == 0


def test_every_database_is_released(backend, request, tmp_path, sdb):
    other = sync_database(backend, request, tmp_path / "other", pool_size=2)
    (tmp_path / "other").mkdir()
    with other as second:

        def both() -> str:
            sdb.connect()
            second.connect()
            sdb.execute_sql("SELECT 1")
            second.execute_sql("SELECT 1")
            return "200 OK"

        app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/": both}), [sdb, second])
        assert call(app)[0] == "200 OK"
        assert in_use(sdb) == 0 and in_use(second) == 0


@pytest.mark.parametrize("atomic", [False, True], ids=["plain", "atomic"])
def test_concurrent_requests_never_share_a_connection(sdb, atomic):
    parties = 4
    probe = Probe(sdb, parties)

    def view() -> str:
        probe.probe()
        return "200 OK"

    app = WSGIDatabaseMiddleware(wsgi_app(sdb, {"/probe": view}), sdb, atomic=atomic)
    with serve(app, threads=parties) as url:
        responses = get_many([url + "/probe"] * parties)
    assert [r.status_code for r in responses] == [200] * parties
    probe.check(parties)
    assert_clean(sdb)
