"""Models for the schema tests: people, their items and the items' tags."""

from __future__ import annotations

import datetime
from decimal import Decimal

import peewee

from fastpeewee import AsyncDatabase, AsyncModel


class Person(AsyncModel):
    email = peewee.CharField(
        max_length=50, unique=True, verbose_name="E-mail address", help_text="Where we write to"
    )
    role = peewee.CharField(
        choices=[("admin", "Administrator"), ("member", "Member")], default="member"
    )
    nickname = peewee.CharField(max_length=20, null=True)
    bio = peewee.TextField(default="")
    age = peewee.SmallIntegerField(null=True)
    score = peewee.IntegerField(default=0)
    karma = peewee.BigIntegerField(default=0)
    balance = peewee.DecimalField(max_digits=6, decimal_places=2, default=Decimal("0.00"))
    ratio = peewee.FloatField(null=True)
    joined = peewee.DateTimeField(default=datetime.datetime.now)


class Item(AsyncModel):
    title = peewee.CharField(max_length=100)
    owner = peewee.ForeignKeyField(Person, backref="items", on_delete="CASCADE")
    reviewer = peewee.ForeignKeyField(Person, backref="reviews", null=True, on_delete="SET NULL")


class Tag(AsyncModel):
    item = peewee.ForeignKeyField(Item, backref="tags", on_delete="CASCADE")
    label = peewee.CharField(max_length=30)


class Category(AsyncModel):
    name = peewee.CharField()
    parent = peewee.ForeignKeyField("self", backref="children", null=True)


SCHEMA_MODELS = [Person, Item, Tag, Category]


def bind_schema_models(db: AsyncDatabase) -> None:
    db.bind(SCHEMA_MODELS)  # type: ignore[attr-defined]
