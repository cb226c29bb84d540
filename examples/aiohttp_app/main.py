"""The reference app's routes as aiohttp handlers.

``create_app(db)`` builds the app on any fastpeewee database (default: the one
``DATABASE_URL`` names). Bodies, path and query parameters are validated with
``examples.sql_app``'s Pydantic schemas: bad input is a 422 ``{"detail": [...]}``,
as in the FastAPI app. Database errors are answered by fastpeewee's middleware
(``User.DoesNotExist`` -> 404 ``"User not found"``, a lost race on the unique
email -> 409, the pool exhausted -> 503); aiohttp's own errors (404 for an
unknown path, 405, 413 for a body over the limit) come as JSON too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, TypeAdapter, ValidationError

from fastpeewee import AsyncDatabase
from fastpeewee.integrations.aiohttp import setup

from ..sql_app import crud, models
from ..sql_app.database import MAX_BODY_BYTES, SLOW_SECONDS, database_from_env
from ..sql_app.schemas import ItemCreate, Limit, Skip, UserCreate, UserId

USER_ID: TypeAdapter[int] = TypeAdapter(UserId)
SKIP: TypeAdapter[int] = TypeAdapter(Skip)
LIMIT: TypeAdapter[int] = TypeAdapter(Limit)
M = TypeVar("M", bound=BaseModel)


def create_app(db: AsyncDatabase | None = None) -> web.Application:
    """The users-and-items API on ``db`` (default: :func:`database_from_env`)."""
    db = db or database_from_env()
    models.bind(db)
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    # Inside json_errors: the database middleware answers database errors itself.
    setup(app, db, models=models.MODELS)

    async def create_user(request: web.Request) -> web.Response:
        user = await body(request, UserCreate)
        if await crud.email_taken(user.email):
            raise detail(web.HTTPConflict, "Email already registered")
        return dump(await crud.create_user(user.email, user.password), status=201)

    async def read_users(request: web.Request) -> web.Response:
        return dump(await crud.get_users(**page(request)))

    async def read_user(request: web.Request) -> web.Response:
        return dump(await crud.get_user(user_id(request)))

    async def create_item_for_user(request: web.Request) -> web.Response:
        owner = user_id(request)
        item = await body(request, ItemCreate)
        if not await crud.user_exists(owner):
            raise detail(web.HTTPNotFound, "User not found")
        return dump(await crud.create_user_item(owner, **item.model_dump()), status=201)

    async def read_items(request: web.Request) -> web.Response:
        return dump(await crud.get_items(**page(request)))

    async def read_slow_users(request: web.Request) -> web.Response:
        paging = page(request)
        # Take the request's connection first, then hold it through a slow step.
        await crud.count_users()
        await asyncio.sleep(SLOW_SECONDS)
        return dump(await crud.get_users(**paging))

    async def health(request: web.Request) -> web.Response:
        # The pools' counters (in_use, waiting, timeouts...), for monitoring; takes no connection.
        return web.json_response(
            {"pools": [dataclasses.asdict(stats) for stats in db.pool_stats()]}
        )

    app.router.add_post("/users/", create_user)
    app.router.add_get("/users/", read_users)
    app.router.add_get("/users/{user_id}", read_user)
    app.router.add_post("/users/{user_id}/items/", create_item_for_user)
    app.router.add_get("/items/", read_items)
    app.router.add_get("/slowusers/", read_slow_users)
    app.router.add_get("/health", health)
    return app


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own error answers (404, 405, 413...) as ``{"detail": reason}``."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return web.json_response({"detail": exc.reason}, status=exc.status)


def detail(error: type[web.HTTPException], detail: Any) -> web.HTTPException:
    """``error`` with a JSON ``{"detail": detail}`` body, to raise."""
    return error(text=json.dumps({"detail": detail}), content_type="application/json")


def invalid(exc: ValidationError, where: str) -> web.HTTPException:
    """A 422 listing ``exc``'s errors, located as FastAPI locates them, to raise."""
    errors = [
        {"loc": [where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    return detail(web.HTTPUnprocessableEntity, errors)


async def body(request: web.Request, schema: type[M]) -> M:
    """The request's JSON body validated by ``schema``; a 422 when it is not one."""
    if request.content_type != "application/json":
        raise detail(web.HTTPUnprocessableEntity, "Send a JSON body (application/json).")
    try:
        data = json.loads(await request.read())
    except ValueError:  # not JSON, or not UTF-8
        raise detail(web.HTTPUnprocessableEntity, "The body is not valid JSON.") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, "body") from None


def user_id(request: web.Request) -> int:
    """The ``{user_id}`` of the path: a positive 32-bit integer, else a 422."""
    try:
        return USER_ID.validate_python(request.match_info["user_id"])
    except ValidationError as exc:
        raise invalid(exc, "path") from None


def page(request: web.Request) -> dict[str, int]:
    """``skip`` and ``limit`` from the query string, within the API's bounds, else a 422."""
    try:
        return {
            "skip": SKIP.validate_python(request.query.get("skip", 0)),
            "limit": LIMIT.validate_python(request.query.get("limit", 100)),
        }
    except ValidationError as exc:
        raise invalid(exc, "query") from None


def dump(value: Any, *, status: int = 200) -> web.Response:
    """A schema instance (or a list of them) as a JSON response."""
    if isinstance(value, list):
        data = [item.model_dump(mode="json") for item in value]
    else:
        data = value.model_dump(mode="json")
    return web.json_response(data, status=status)
