"""The sync flavour: every endpoint is a plain ``def`` run in FastAPI's threadpool."""

from __future__ import annotations

import time

from examples.sql_app import models, schemas
from examples.sql_app.database import SLOW_SECONDS, database_from_env
from fastapi import FastAPI, HTTPException

from fastpeewee import AsyncDatabase, DatabaseMiddleware
from fastpeewee.fastapi import add_exception_handlers, database_lifespan

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
    add_exception_handlers(app)

    @app.post("/users/", response_model=schemas.User, status_code=201)
    def create_user(user: schemas.UserCreate) -> schemas.User:
        if crud.get_user_by_email(user.email) is not None:
            raise HTTPException(status_code=400, detail="Email already registered")
        created = crud.create_user(user)
        return schemas.User(id=created.id, email=created.email, is_active=created.is_active)

    @app.get("/users/", response_model=list[schemas.User])
    def read_users(skip: schemas.Skip = 0, limit: schemas.Limit = 100) -> list[models.User]:
        return crud.get_users(skip=skip, limit=limit)

    @app.get("/users/{user_id}", response_model=schemas.User)
    def read_user(user_id: schemas.UserId) -> models.User:
        user = crud.get_user(user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="User not found")
        return user

    @app.post("/users/{user_id}/items/", response_model=schemas.Item, status_code=201)
    def create_item_for_user(user_id: schemas.UserId, item: schemas.ItemCreate) -> models.Item:
        if crud.get_user_by_id(user_id) is None:
            raise HTTPException(status_code=404, detail="User not found")
        return crud.create_user_item(item, user_id)

    @app.get("/items/", response_model=list[schemas.Item])
    def read_items(skip: schemas.Skip = 0, limit: schemas.Limit = 100) -> list[models.Item]:
        return crud.get_items(skip=skip, limit=limit)

    @app.get("/slowusers/", response_model=list[schemas.User])
    def read_slow_users(skip: schemas.Skip = 0, limit: schemas.Limit = 100) -> list[models.User]:
        crud.count_users()  # take the request's connection, then hold it
        time.sleep(SLOW_SECONDS)
        return crud.get_users(skip=skip, limit=limit)

    return app


app = create_app()
