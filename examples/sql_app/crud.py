"""The queries behind the routes, as coroutines returning API schemas.

``afetch`` loads exactly the relations a schema reads (a user's items in one
extra query for the whole page), so no route runs a query per row.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastpeewee import afetch, afetch_one

from .models import Item, User, database
from .schemas import ItemRead, UserRead
from .security import hash_password


async def get_user(user_id: int) -> Any:
    """The user with this id and their items; raises ``User.DoesNotExist`` (a 404)."""
    return await afetch_one(User.select().where(User.id == user_id), UserRead)


async def user_exists(user_id: int) -> bool:
    return await database().exists(User.select().where(User.id == user_id))


async def email_taken(email: str) -> bool:
    return await database().exists(User.select().where(User.email == email))


async def get_users(skip: int = 0, limit: int = 100) -> list[Any]:
    """A page of users, each with their items: two queries whatever the page size."""
    return await afetch(User.select().order_by(User.id).offset(skip).limit(limit), UserRead)


async def count_users() -> int:
    return await database().count(User.select())


async def create_user(email: str, password: str) -> Any:
    # scrypt is deliberately slow (~50 ms): hash in a thread, not on the event loop.
    hashed = await asyncio.to_thread(hash_password, password)
    user = await User.acreate(email=email, hashed_password=hashed)
    return UserRead(id=user.id, email=user.email, is_active=user.is_active, items=[])


async def get_items(skip: int = 0, limit: int = 100) -> list[Any]:
    return await afetch(Item.select().order_by(Item.id).offset(skip).limit(limit), ItemRead)


async def create_user_item(user_id: int, **fields: Any) -> Any:
    return ItemRead.model_validate(await Item.acreate(owner=user_id, **fields))
