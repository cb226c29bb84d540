"""The app's two tables. The database is bound when the app is created."""

from __future__ import annotations

import peewee

from fastpeewee import AsyncDatabase, AsyncModel


class User(AsyncModel):
    email = peewee.CharField(max_length=254, unique=True)
    hashed_password = peewee.CharField(max_length=200)
    is_active = peewee.BooleanField(default=True)


class Item(AsyncModel):
    title = peewee.CharField(max_length=200, index=True)
    description = peewee.CharField(max_length=1000, null=True)
    owner = peewee.ForeignKeyField(User, backref="items", on_delete="CASCADE")


MODELS: list[type[peewee.Model]] = [User, Item]


def bind(database: AsyncDatabase) -> None:
    """Point the models at ``database`` (the app does it when it is created)."""
    assert isinstance(database, peewee.Database)  # every fastpeewee database is one
    database.bind(MODELS)


def database() -> AsyncDatabase:
    """The database the models are bound to."""
    db = User._meta.database
    assert isinstance(db, AsyncDatabase), "call models.bind(database) first"
    return db
