"""The queries behind the routes, as plain blocking peewee calls."""

from __future__ import annotations

from examples.sql_app import schemas
from examples.sql_app.models import Item, User
from examples.sql_app.security import hash_password
from peewee import prefetch


def get_user(user_id: int) -> User | None:
    """The user with this id and their items, or None."""
    users = prefetch(User.select().where(User.id == user_id), Item.select().order_by(Item.id))
    return users[0] if users else None


def get_user_by_id(user_id: int) -> User | None:
    """The user with this id, without their items."""
    return User.get_or_none(User.id == user_id)


def get_user_by_email(email: str) -> User | None:
    return User.get_or_none(User.email == email)


def get_users(skip: int = 0, limit: int = 100) -> list[User]:
    """A page of users, each with their items: two queries whatever the page size."""
    users = User.select().order_by(User.id).offset(skip).limit(limit)
    return prefetch(users, Item.select().order_by(Item.id))


def count_users() -> int:
    return User.select().count()


def create_user(user: schemas.UserCreate) -> User:
    return User.create(email=user.email, hashed_password=hash_password(user.password))


def get_items(skip: int = 0, limit: int = 100) -> list[Item]:
    return list(Item.select().order_by(Item.id).offset(skip).limit(limit))


def create_user_item(item: schemas.ItemCreate, user_id: int) -> Item:
    return Item.create(**item.model_dump(), owner=user_id)
