"""The queries behind the routes."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from . import models, schemas
from .security import hash_password


async def get_user(db: AsyncSession, user_id: int) -> models.User | None:
    """The user and their items (two queries), or None."""
    query = (
        select(models.User)
        .where(models.User.id == user_id)
        .options(selectinload(models.User.items))
    )
    return (await db.scalars(query)).first()


async def get_user_by_email(db: AsyncSession, email: str) -> models.User | None:
    """The user with this email, or None."""
    return (await db.scalars(select(models.User).where(models.User.email == email))).first()


async def get_users(db: AsyncSession, skip: int, limit: int) -> list[models.User]:
    """A page of users with their items (two queries)."""
    query = (
        select(models.User)
        .order_by(models.User.id)
        .offset(skip)
        .limit(limit)
        .options(selectinload(models.User.items))
    )
    return list((await db.scalars(query)).all())


async def create_user(db: AsyncSession, user: schemas.UserCreate) -> models.User:
    """Insert a user; scrypt (~50-80 ms) runs in a thread, off the event loop."""
    hashed = await asyncio.to_thread(hash_password, user.password)
    db_user = models.User(email=user.email, hashed_password=hashed, is_active=True)
    db.add(db_user)
    await db.commit()
    return db_user


async def get_items(db: AsyncSession, skip: int, limit: int) -> list[models.Item]:
    """A page of items."""
    query = select(models.Item).order_by(models.Item.id).offset(skip).limit(limit)
    return list((await db.scalars(query)).all())


async def create_user_item(
    db: AsyncSession, item: schemas.ItemCreate, user_id: int
) -> models.Item:
    """Insert an item owned by ``user_id``."""
    db_item = models.Item(**item.model_dump(), owner_id=user_id)
    db.add(db_item)
    await db.commit()
    return db_item
