"""The queries behind the routes, as coroutines."""

from __future__ import annotations

import asyncio

from . import schemas
from .models import Item, User, database
from .security import hash_password


async def get_user(user_id: int) -> User | None:
    """The user with this id and their items, or None."""
    users = await database().aprefetch(
        User.select().where(User.id == user_id), Item.select().order_by(Item.id)
    )
    return users[0] if users else None


async def get_user_by_email(email: str) -> User | None:
    return await User.aget_or_none(User.email == email)


async def get_users(skip: int = 0, limit: int = 100) -> list[User]:
    """A page of users, each with their items: two queries whatever the page size."""
    users = User.select().order_by(User.id).offset(skip).limit(limit)
    return await database().aprefetch(users, Item.select().order_by(Item.id))


async def create_user(user: schemas.UserCreate) -> User:
    # scrypt is deliberately slow (~50 ms): hash in a thread, not on the event loop.
    hashed = await asyncio.to_thread(hash_password, user.password)
    return await User.acreate(email=user.email, hashed_password=hashed)


async def get_items(skip: int = 0, limit: int = 100) -> list[Item]:
    return await database().list(Item.select().order_by(Item.id).offset(skip).limit(limit))


async def create_user_item(item: schemas.ItemCreate, user_id: int) -> Item:
    return await Item.acreate(**item.model_dump(), owner=user_id)


async def get_user_by_id(user_id: int) -> User | None:
    """The user with this id, without their items."""
    return await User.aget_or_none(User.id == user_id)


async def count_users() -> int:
    return await database().count(User.select())
