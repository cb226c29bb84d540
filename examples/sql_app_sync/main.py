"""The sync flavour: every endpoint is a plain ``def`` run in FastAPI's threadpool."""

from __future__ import annotations

import time
from typing import Any

from examples.sql_app import models
from examples.sql_app.database import MAX_BODY_BYTES, SLOW_SECONDS, database_from_env
from examples.sql_app.schemas import (
    ItemCreate,
    ItemRead,
    Limit,
    Skip,
    UserCreate,
    UserId,
    UserRead,
)
from fastapi import FastAPI, HTTPException

from fastpeewee import AsyncDatabase, BodySizeLimitMiddleware, DatabaseMiddleware
from fastpeewee.integrations.fastapi import add_exception_handlers, database_lifespan

from . import crud


def create_app(db: AsyncDatabase | None = None) -> FastAPI:
    """The users-and-items API on ``db`` (default: ``DATABASE_URL``), sync endpoints."""
    db = db or database_from_env()
    models.bind(db)
    app = FastAPI(
        title="sql_app (sync)",
        description="The FastAPI + Peewee tutorial's app on fastpeewee, plain def endpoints.",
        lifespan=database_lifespan(db, models.MODELS),
    )
    app.add_middleware(DatabaseMiddleware, database=db)
    # Outermost: a body over the limit is refused before anything reads it.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    add_exception_handlers(app)

    @app.post("/users/", response_model=UserRead, status_code=201)
    def create_user(user: UserCreate) -> Any:
        if crud.email_taken(user.email):
            raise HTTPException(status_code=409, detail="Email already registered")
        return crud.create_user(user.email, user.password)

    @app.get("/users/", response_model=list[UserRead])
    def read_users(skip: Skip = 0, limit: Limit = 100) -> Any:
        return crud.get_users(skip=skip, limit=limit)

    @app.get("/users/{user_id}", response_model=UserRead)
    def read_user(user_id: UserId) -> Any:
        return crud.get_user(user_id)

    @app.post("/users/{user_id}/items/", response_model=ItemRead, status_code=201)
    def create_item_for_user(user_id: UserId, item: ItemCreate) -> Any:
        if not crud.user_exists(user_id):
            raise HTTPException(status_code=404, detail="User not found")
        return crud.create_user_item(user_id, **item.model_dump())

    @app.get("/items/", response_model=list[ItemRead])
    def read_items(skip: Skip = 0, limit: Limit = 100) -> Any:
        return crud.get_items(skip=skip, limit=limit)

    @app.get("/slowusers/", response_model=list[UserRead])
    def read_slow_users(skip: Skip = 0, limit: Limit = 100) -> Any:
        crud.count_users()  # take the request's connection, then hold it
        time.sleep(SLOW_SECONDS)
        return crud.get_users(skip=skip, limit=limit)

    return app


app = create_app()
