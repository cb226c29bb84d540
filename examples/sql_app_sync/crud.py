"""The queries behind the routes, as plain blocking peewee calls returning API schemas."""

from __future__ import annotations

from typing import Any

from examples.sql_app.models import Item, User
from examples.sql_app.schemas import ItemRead, UserRead
from examples.sql_app.security import hash_password

from fastpeewee import fetch, fetch_one


def get_user(user_id: int) -> Any:
    """The user with this id and their items; raises ``User.DoesNotExist`` (a 404)."""
    return fetch_one(User.select().where(User.id == user_id), UserRead)


def user_exists(user_id: int) -> bool:
    return User.select().where(User.id == user_id).exists()


def email_taken(email: str) -> bool:
    return User.select().where(User.email == email).exists()


def get_users(skip: int = 0, limit: int = 100) -> list[Any]:
    """A page of users, each with their items: two queries whatever the page size."""
    return fetch(User.select().order_by(User.id).offset(skip).limit(limit), UserRead)


def count_users() -> int:
    return User.select().count()


def create_user(email: str, password: str) -> Any:
    user = User.create(email=email, hashed_password=hash_password(password))
    return UserRead(id=user.id, email=user.email, is_active=user.is_active, items=[])


def get_items(skip: int = 0, limit: int = 100) -> list[Any]:
    return fetch(Item.select().order_by(Item.id).offset(skip).limit(limit), ItemRead)


def create_user_item(user_id: int, **fields: Any) -> Any:
    return ItemRead.model_validate(Item.create(owner=user_id, **fields))
