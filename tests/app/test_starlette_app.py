"""examples/starlette_app: examples/sql_app's routes on plain Starlette, on every backend."""

from __future__ import annotations

from examples.starlette_app import main

from .ported_app import check_every_route, serve


async def test_every_route(backend, request, tmp_path):
    def lifespan(app):
        return app.router.lifespan_context(app)

    async with serve(main.create_app, lifespan, backend, request, tmp_path) as (http, _db):
        await check_every_route(http)


def test_the_module_level_app_is_a_starlette_app():
    assert type(main.app).__name__ == "Starlette"
