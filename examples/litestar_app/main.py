"""examples/sql_app's routes on Litestar, reusing its models, schemas and crud.

``create_app(db)`` builds the app on any fastpeewee database; the module-level
``app`` uses ``DATABASE_URL`` (SQLite by default) for uvicorn. Litestar
validates bodies with the shared Pydantic schemas; its validation errors
(400 by default) are answered 422, as examples/sql_app does.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import JSONBody, PathParameter, QueryParameter

from fastpeewee import AsyncDatabase
from fastpeewee.integrations.litestar import (
    DatabaseMiddleware,
    database_lifespan,
    exception_handlers,
)

from ..sql_app import crud, models
from ..sql_app.database import database_from_env
from ..sql_app.schemas import ItemCreate, ItemRead, UserCreate, UserRead

UserId = Annotated[int, PathParameter(ge=1, le=2**31 - 1)]
Skip = Annotated[int, QueryParameter(ge=0, le=1_000_000)]
Limit = Annotated[int, QueryParameter(ge=1, le=100)]


@post("/users/", status_code=201)
async def create_user(data: JSONBody[UserCreate]) -> UserRead:
    if await crud.email_taken(data.email):
        raise HTTPException(status_code=409, detail="Email already registered")
    user: UserRead = await crud.create_user(data.email, data.password)
    return user


@get("/users/")
async def read_users(skip: Skip = 0, limit: Limit = 100) -> list[UserRead]:
    users: list[UserRead] = await crud.get_users(skip=skip, limit=limit)
    return users


@get("/users/{user_id:int}")
async def read_user(user_id: UserId) -> UserRead:
    user: UserRead = await crud.get_user(user_id)  # User.DoesNotExist -> 404
    return user


@post("/users/{user_id:int}/items/", status_code=201)
async def create_item_for_user(user_id: UserId, data: JSONBody[ItemCreate]) -> ItemRead:
    if not await crud.user_exists(user_id):
        raise HTTPException(status_code=404, detail="User not found")
    item: ItemRead = await crud.create_user_item(user_id, **data.model_dump())
    return item


@get("/items/")
async def read_items(skip: Skip = 0, limit: Limit = 100) -> list[ItemRead]:
    items: list[ItemRead] = await crud.get_items(skip=skip, limit=limit)
    return items


def invalid(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar's validation errors (400) as 422 ``{"detail": [...]}``, like examples/sql_app."""
    assert isinstance(exc, ValidationException)
    return Response({"detail": exc.extra or exc.detail}, status_code=422)


def http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """``HTTPException`` as ``{"detail": ...}``, the body examples/sql_app gives."""
    assert isinstance(exc, HTTPException)
    return Response({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(db: AsyncDatabase | None = None) -> Litestar:
    """The users-and-items API on ``db`` (default: :func:`database_from_env`)."""
    db = db or database_from_env()
    models.bind(db)

    @get("/health")
    async def health() -> dict[str, Any]:
        # The pools' counters, for monitoring; takes no connection.
        return {"pools": [dataclasses.asdict(s) for s in db.pool_stats()]}

    return Litestar(
        route_handlers=[
            create_user,
            read_users,
            read_user,
            create_item_for_user,
            read_items,
            health,
        ],
        middleware=[DatabaseMiddleware(db)],
        exception_handlers={
            HTTPException: http_error,
            ValidationException: invalid,
            **exception_handlers(),  # User.DoesNotExist -> 404 "User not found", ...
        },
        lifespan=[database_lifespan(db, models.MODELS)],
    )


app = create_app()
