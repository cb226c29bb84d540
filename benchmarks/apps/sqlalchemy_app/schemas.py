"""Request and response bodies: the same fields and limits as examples/sql_app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

MAX_ID = 2**31 - 1
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
Skip = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=100)]


class ItemCreate(BaseModel):
    """A new item; the owner is in the URL."""

    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)


class Item(BaseModel):
    """An item in responses."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None = None
    owner_id: int


class UserCreate(BaseModel):
    """A sign-up."""

    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=8, max_length=128)


class User(BaseModel):
    """A user in responses, with their items."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    is_active: bool
    items: list[Item] = []
