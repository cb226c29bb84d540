"""examples/sql_app's routes on Starlette, reusing its models, schemas and crud.

``create_app(db)`` builds the app on any fastpeewee database; the module-level
``app`` uses ``DATABASE_URL`` (SQLite by default) for uvicorn. Bodies and query
parameters are validated by the shared Pydantic schemas (422 on bad input).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastpeewee import AsyncDatabase, schema_type
from fastpeewee.integrations.starlette import (
    DatabaseMiddleware,
    database_lifespan,
    exception_handlers,
)

from ..sql_app import crud, models
from ..sql_app.database import database_from_env
from ..sql_app.schemas import ItemCreate, Limit, Skip, UserCreate

USER_ID: TypeAdapter[int] = TypeAdapter(schema_type(models.User.id))
SKIP: TypeAdapter[int] = TypeAdapter(Skip)
LIMIT: TypeAdapter[int] = TypeAdapter(Limit)


class Invalid(Exception):
    """Bad input: answered 422 with Pydantic's errors, as FastAPI does."""

    def __init__(self, errors: list[Any]) -> None:
        super().__init__("invalid request")
        self.errors = errors


async def invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Invalid)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's HTTPException as JSON ``{"detail": ...}`` (its default is plain text)."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _errors(exc: ValidationError) -> list[Any]:
    return exc.errors(include_url=False, include_input=False, include_context=False)


def _json(value: Any, status_code: int = 200) -> JSONResponse:
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    elif isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return JSONResponse(value, status_code=status_code)


async def _body(request: Request, schema: Any) -> Any:
    try:
        return schema.model_validate_json(await request.body())
    except ValidationError as exc:
        raise Invalid(_errors(exc)) from exc


def _user_id(request: Request) -> int:
    try:
        user_id = USER_ID.validate_python(request.path_params["user_id"])
    except ValidationError as exc:
        raise Invalid(_errors(exc)) from exc
    if user_id < 1:
        raise Invalid([{"loc": ["path", "user_id"], "msg": "must be at least 1"}])
    return user_id


def _page(request: Request) -> tuple[int, int]:
    try:
        skip = SKIP.validate_python(request.query_params.get("skip", 0), strict=False)
        limit = LIMIT.validate_python(request.query_params.get("limit", 100), strict=False)
    except ValidationError as exc:
        raise Invalid(_errors(exc)) from exc
    return skip, limit


async def create_user(request: Request) -> JSONResponse:
    user = await _body(request, UserCreate)
    if await crud.email_taken(user.email):
        raise HTTPException(409, "Email already registered")
    return _json(await crud.create_user(user.email, user.password), 201)


async def read_users(request: Request) -> JSONResponse:
    skip, limit = _page(request)
    return _json(await crud.get_users(skip=skip, limit=limit))


async def read_user(request: Request) -> JSONResponse:
    return _json(await crud.get_user(_user_id(request)))  # User.DoesNotExist -> 404


async def create_item_for_user(request: Request) -> JSONResponse:
    user_id = _user_id(request)
    item = await _body(request, ItemCreate)
    if not await crud.user_exists(user_id):
        raise HTTPException(404, "User not found")
    return _json(await crud.create_user_item(user_id, **item.model_dump()), 201)


async def read_items(request: Request) -> JSONResponse:
    skip, limit = _page(request)
    return _json(await crud.get_items(skip=skip, limit=limit))


def create_app(db: AsyncDatabase | None = None) -> Starlette:
    """The users-and-items API on ``db`` (default: :func:`database_from_env`)."""
    db = db or database_from_env()
    models.bind(db)

    async def health(request: Request) -> JSONResponse:
        # The pools' counters, for monitoring; takes no connection.
        return JSONResponse({"pools": [dataclasses.asdict(s) for s in db.pool_stats()]})

    return Starlette(
        routes=[
            Route("/users/", create_user, methods=["POST"]),
            Route("/users/", read_users, methods=["GET"]),
            Route("/users/{user_id}", read_user, methods=["GET"]),
            Route("/users/{user_id}/items/", create_item_for_user, methods=["POST"]),
            Route("/items/", read_items, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        middleware=[Middleware(DatabaseMiddleware, database=db)],
        exception_handlers={
            **exception_handlers(),  # User.DoesNotExist -> 404 "User not found", ...
            HTTPException: http_error,
            Invalid: invalid,
        },
        lifespan=database_lifespan(db, models.MODELS),
    )


app = create_app()
