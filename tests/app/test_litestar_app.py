"""examples/litestar_app: examples/sql_app's routes on Litestar, on every backend."""

from __future__ import annotations

from examples.litestar_app import main

from .ported_app import check_every_route, serve


async def test_every_route(backend, request, tmp_path):
    def lifespan(app):
        return app.lifespan()

    async with serve(main.create_app, lifespan, backend, request, tmp_path) as (http, _db):
        await check_every_route(http)
        # A user id that is no integer matches no route in Litestar: 404, not 422.
        assert (await http.get("/users/abc")).status_code == 404


def test_the_module_level_app_is_a_litestar_app():
    assert type(main.app).__name__ == "Litestar"
