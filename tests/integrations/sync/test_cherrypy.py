"""CherryPy: the app from ``cherrypy.tree.mount`` wrapped in WSGIDatabaseMiddleware."""

from __future__ import annotations

from typing import Any

import cherrypy  # type: ignore[import-untyped]

from fastpeewee import WSGIDatabaseMiddleware

from .helpers import Views, check_atomic, check_concurrency, check_exception


class Root:
    """Exposes the shared views: ``/probe``, ``/boom``, ``/create/<name>``, ``/fail/<name>``."""

    def __init__(self, views: Views) -> None:
        self.views = views

    @cherrypy.expose
    def probe(self) -> str:
        return self.views.probe()

    @cherrypy.expose
    def boom(self) -> str:
        return self.views.boom()

    @cherrypy.expose
    def create(self, name: str) -> str:
        return self.views.create(name)

    @cherrypy.expose
    def fail(self, name: str) -> str:
        return self.views.fail(name)


def build(views: Views, atomic: bool) -> WSGIDatabaseMiddleware:
    """The recipe: mount the root, wrap the application it returns, serve the wrapper."""
    config = {"/": {"request.show_tracebacks": False}}  # no traceback in a 500's body
    app: Any = cherrypy.tree.mount(Root(views), "", config)
    return WSGIDatabaseMiddleware(app, views.db, atomic=atomic)


def test_concurrent_requests_never_share_a_connection(sdb):
    check_concurrency(sdb, build)


def test_an_exception_in_a_view_leaves_no_open_transaction(sdb):
    check_exception(sdb, build)


def test_atomic_commits_and_rolls_back(sdb):
    check_atomic(sdb, build)
