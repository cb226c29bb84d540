"""Pyramid: the app from ``config.make_wsgi_app()`` wrapped in WSGIDatabaseMiddleware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator  # type: ignore[import-untyped]
from pyramid.request import Request  # type: ignore[import-untyped]
from pyramid.response import Response  # type: ignore[import-untyped]
from webtest import TestApp  # type: ignore[import-untyped]

from fastpeewee import WSGIDatabaseMiddleware

from .helpers import Views, assert_clean, check_atomic, check_concurrency, check_exception


def view(action: Callable[..., str]) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        return Response(action(*request.matchdict.values()), content_type="text/plain")

    return handle


def build(views: Views, atomic: bool) -> WSGIDatabaseMiddleware:
    """The recipe: a plain Pyramid app, wrapped; serve the wrapper."""
    with Configurator() as config:
        for name, pattern, action in (
            ("probe", "/probe", views.probe),
            ("boom", "/boom", views.boom),
            ("create", "/create/{name}", views.create),
            ("fail", "/fail/{name}", views.fail),
        ):
            config.add_route(name, pattern)
            config.add_view(view(action), route_name=name)
        app: Any = config.make_wsgi_app()
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
    try:
        client.get("/fail/via-webtest-lost")  # no exception view: Pyramid re-raises
    except Exception as exc:
        assert type(exc).__name__ == "Boom"
    else:
        raise AssertionError("the view's exception should reach the WSGI caller")
    assert_clean(sdb)
