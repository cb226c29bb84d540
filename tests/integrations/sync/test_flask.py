"""Flask: WSGIDatabaseMiddleware on ``app.wsgi_app``; peewee's classic
before_request/teardown_request connect/close hooks still work next to it."""

from __future__ import annotations

from typing import Any

import httpx
from flask import Flask

from fastpeewee import WSGIDatabaseMiddleware

from .helpers import (
    Views,
    assert_clean,
    check_atomic,
    check_concurrency,
    check_exception,
    in_use,
    opened,
    serve,
)


def build(views: Views, atomic: bool, *, hooks: bool = False) -> Flask:
    """The recipe: routes are plain views, the middleware wraps ``app.wsgi_app``."""
    db = views.db
    app = Flask(__name__)
    app.wsgi_app = WSGIDatabaseMiddleware(app.wsgi_app, db, atomic=atomic)  # type: ignore[method-assign]

    if hooks:  # peewee's classic recipe: a connection held for the whole request

        @app.before_request
        def _db_connect() -> None:
            db.connect()

        @app.teardown_request
        def _db_close(exc: BaseException | None) -> None:
            if not db.is_closed():
                db.close()

    app.add_url_rule("/probe", view_func=views.probe)
    app.add_url_rule("/boom", view_func=views.boom)
    app.add_url_rule("/create/<name>", view_func=views.create)
    app.add_url_rule("/fail/<name>", view_func=views.fail)
    app.add_url_rule("/ping", view_func=lambda: "pong")
    return app


def with_hooks(views: Views, atomic: bool) -> Flask:
    return build(views, atomic, hooks=True)


def test_concurrent_requests_never_share_a_connection(sdb):
    check_concurrency(sdb, build)


def test_the_classic_connect_close_hooks_still_work(sdb):
    check_concurrency(sdb, with_hooks)
    check_exception(sdb, with_hooks)


def test_an_exception_in_a_view_leaves_no_open_transaction(sdb):
    check_exception(sdb, build)


def test_atomic_commits_and_rolls_back(sdb):
    check_atomic(sdb, build)


def test_only_the_hooks_take_a_connection_for_a_request_that_never_queries(sdb):
    sdb.close_all()  # start from fresh pools: count what the requests open
    with serve(build(Views(sdb), False)) as url:
        assert httpx.get(url + "/ping", timeout=10).text == "pong"
    assert opened(sdb) == 0  # lazy: no query, no connection
    with serve(with_hooks(Views(sdb), False)) as url:
        assert httpx.get(url + "/ping", timeout=10).text == "pong"
    assert opened(sdb) == 1  # db.connect() in before_request takes one anyway
    assert_clean(sdb)


def test_the_flask_test_client_goes_through_the_middleware(sdb):
    app: Any = build(Views(sdb), True)
    client = app.test_client()
    assert client.get("/create/via-client").status_code == 200
    assert client.get("/fail/via-client-lost").status_code == 500
    assert in_use(sdb) == 0
    assert_clean(sdb)
