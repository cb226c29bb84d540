"""The async flavour: every endpoint is ``async def`` and awaits the database.

``create_app(db)`` builds the app on any fastpeewee database; the module-level
``app`` uses ``DATABASE_URL`` (SQLite by default) for uvicorn.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import FastAPI, HTTPException

from fastpeewee import AsyncDatabase, BodySizeLimitMiddleware, DatabaseMiddleware
from fastpeewee.integrations.fastapi import add_exception_handlers, database_lifespan

from . import crud, models
from .database import MAX_BODY_BYTES, SLOW_SECONDS, database_from_env
from .schemas import ItemCreate, ItemRead, Limit, Skip, UserCreate, UserId, UserRead


def create_app(db: AsyncDatabase | None = None) -> FastAPI:
    """The users-and-items API on ``db`` (default: :func:`database_from_env`)."""
    db = db or database_from_env()
    models.bind(db)
    app = FastAPI(
        title="sql_app (async)",
        description="The FastAPI + Peewee tutorial's app on fastpeewee, async endpoints.",
        lifespan=database_lifespan(db, models.MODELS),
    )
    app.add_middleware(DatabaseMiddleware, database=db)
    # Outermost: a body over the limit is refused before anything reads it.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    add_exception_handlers(app)  # User.DoesNotExist -> 404 "User not found", ...

    @app.post("/users/", response_model=UserRead, status_code=201)
    async def create_user(user: UserCreate) -> Any:
        if await crud.email_taken(user.email):
            raise HTTPException(status_code=409, detail="Email already registered")
        return await crud.create_user(user.email, user.password)

    @app.get("/users/", response_model=list[UserRead])
    async def read_users(skip: Skip = 0, limit: Limit = 100) -> Any:
        return await crud.get_users(skip=skip, limit=limit)

    @app.get("/users/{user_id}", response_model=UserRead)
    async def read_user(user_id: UserId) -> Any:
        return await crud.get_user(user_id)

    @app.post("/users/{user_id}/items/", response_model=ItemRead, status_code=201)
    async def create_item_for_user(user_id: UserId, item: ItemCreate) -> Any:
        if not await crud.user_exists(user_id):
            raise HTTPException(status_code=404, detail="User not found")
        return await crud.create_user_item(user_id, **item.model_dump())

    @app.get("/items/", response_model=list[ItemRead])
    async def read_items(skip: Skip = 0, limit: Limit = 100) -> Any:
        return await crud.get_items(skip=skip, limit=limit)

    @app.get("/slowusers/", response_model=list[UserRead])
    async def read_slow_users(skip: Skip = 0, limit: Limit = 100) -> Any:
        # Take the request's connection first, then hold it through a slow step.
        await crud.count_users()
        await asyncio.sleep(SLOW_SECONDS)
        return await crud.get_users(skip=skip, limit=limit)

    @app.get("/health")
    async def health() -> Any:
        # The pools' counters (in_use, waiting, timeouts...), for monitoring; takes no connection.
        return {"pools": [dataclasses.asdict(stats) for stats in db.pool_stats()]}

    return app


app = create_app()
