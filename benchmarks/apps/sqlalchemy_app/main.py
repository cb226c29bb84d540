"""The routes: the same paths, status codes and JSON as examples/sql_app/main.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy.ext.asyncio import AsyncSession

from . import crud, models, schemas
from .database import engine, get_db

Db = Annotated[AsyncSession, Depends(get_db)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the tables on start-up, dispose of the pool on shutdown."""
    async with engine.begin() as conn:
        await conn.run_sync(models.Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(title="sql_app (SQLAlchemy 2 async)", lifespan=lifespan)


@app.post("/users/", response_model=schemas.User, status_code=201)
async def create_user(user: schemas.UserCreate, db: Db) -> schemas.User:
    if await crud.get_user_by_email(db, user.email) is not None:
        raise HTTPException(status_code=400, detail="Email already registered")
    created = await crud.create_user(db, user)
    return schemas.User(id=created.id, email=created.email, is_active=created.is_active)


@app.get("/users/", response_model=list[schemas.User])
async def read_users(
    db: Db, skip: schemas.Skip = 0, limit: schemas.Limit = 100
) -> list[models.User]:
    return await crud.get_users(db, skip=skip, limit=limit)


@app.get("/users/{user_id}", response_model=schemas.User)
async def read_user(user_id: schemas.UserId, db: Db) -> models.User:
    user = await crud.get_user(db, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="User not found")
    return user


@app.post("/users/{user_id}/items/", response_model=schemas.Item, status_code=201)
async def create_item_for_user(
    user_id: schemas.UserId, item: schemas.ItemCreate, db: Db
) -> models.Item:
    if await db.get(models.User, user_id) is None:
        raise HTTPException(status_code=404, detail="User not found")
    return await crud.create_user_item(db, item, user_id)


@app.get("/items/", response_model=list[schemas.Item])
async def read_items(
    db: Db, skip: schemas.Skip = 0, limit: schemas.Limit = 100
) -> list[models.Item]:
    return await crud.get_items(db, skip=skip, limit=limit)
