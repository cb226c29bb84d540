"""Falcon: the falcon.App (a WSGI app) wrapped in WSGIDatabaseMiddleware.

Falcon's own middleware (process_request/process_response) is not needed:
the wrapper also covers the response body's streaming, which ends after
process_response has run.
"""

from __future__ import annotations

import falcon
import falcon.testing

from fastpeewee import WSGIDatabaseMiddleware

from .helpers import Views, assert_clean, check_atomic, check_concurrency, check_exception


class Resource:
    """Routes ``/<action>`` and ``/<action>/{name}`` to the shared views."""

    def __init__(self, views: Views, action: str) -> None:
        self.views = views
        self.action = action

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = getattr(self.views, self.action)(*params.values())


def build(views: Views, atomic: bool) -> WSGIDatabaseMiddleware:
    """The recipe: a plain falcon.App, wrapped; serve the wrapper."""
    app = falcon.App()
    app.add_route("/probe", Resource(views, "probe"))
    app.add_route("/boom", Resource(views, "boom"))
    app.add_route("/create/{name}", Resource(views, "create"))
    app.add_route("/fail/{name}", Resource(views, "fail"))
    return WSGIDatabaseMiddleware(app, views.db, atomic=atomic)


def test_concurrent_requests_never_share_a_connection(sdb):
    check_concurrency(sdb, build)


def test_an_exception_in_a_view_leaves_no_open_transaction(sdb):
    check_exception(sdb, build)


def test_atomic_commits_and_rolls_back(sdb):
    check_atomic(sdb, build)


def test_falcon_testing_goes_through_the_middleware(sdb):
    client = falcon.testing.TestClient(build(Views(sdb), True))
    assert client.simulate_get("/create/via-falcon").text == "created"
    assert client.simulate_get("/fail/via-falcon-lost").status_code == 500
    assert_clean(sdb)
