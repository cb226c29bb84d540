"""Models shared by the tests; each test binds them to its own database."""

from __future__ import annotations

import peewee

from fastpeewee import AsyncDatabase, AsyncModel


class User(AsyncModel):
    username = peewee.CharField(unique=True, max_length=100)


class Tweet(AsyncModel):
    user = peewee.ForeignKeyField(User, backref="tweets", on_delete="CASCADE")
    content = peewee.TextField(default="")
    likes = peewee.IntegerField(default=0)


MODELS = [User, Tweet]


def bind_models(db: AsyncDatabase) -> None:
    db.bind(MODELS)  # type: ignore[attr-defined]
