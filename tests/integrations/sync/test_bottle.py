"""Bottle: the Bottle app (a WSGI app) wrapped in WSGIDatabaseMiddleware."""

from __future__ import annotations

import bottle  # type: ignore[import-untyped]
from webtest import TestApp  # type: ignore[import-untyped]

from fastpeewee import WSGIDatabaseMiddleware

from .helpers import Views, assert_clean, check_atomic, check_concurrency, check_exception


def build(views: Views, atomic: bool) -> WSGIDatabaseMiddleware:
    """The recipe: a plain Bottle app, wrapped; serve the wrapper."""
    app = bottle.Bottle()
    app.route("/probe")(views.probe)
    app.route("/boom")(views.boom)
    app.route("/create/<name>")(views.create)
    app.route("/fail/<name>")(views.fail)
    return WSGIDatabaseMiddleware(app, views.db, atomic=atomic)


def test_concurrent_requests_never_share_a_connection(sdb):
    check_concurrency(sdb, build)


def test_an_exception_in_a_view_leaves_no_open_transaction(sdb):
    check_exception(sdb, build)


def test_atomic_commits_and_rolls_back(sdb):
    check_atomic(sdb, build)


def test_webtest_goes_through_the_middleware(sdb):
    client = TestApp(build(Views(sdb), True))
    assert client.get("/create/via-webtest").text == "created"
    assert client.get("/fail/via-webtest-lost", status=500, expect_errors=True).status_int == 500
    assert_clean(sdb)
