"""What the API accepts and returns. Passwords go in, never out."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

# AutoField ids are 32-bit signed integers on PostgreSQL: bound them here so an
# out-of-range id is a 422, not a database error.
MAX_ID = 2**31 - 1
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="The user's id.")]
Skip = Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Rows to return (at most 100).")]
# Text the databases can store: PostgreSQL refuses NUL characters.
NO_NUL = r"^[^\x00]*$"


class ItemCreate(BaseModel):
    """A new item; its owner comes from the URL."""

    title: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    description: str | None = Field(default=None, max_length=1000, pattern=NO_NUL)


class Item(BaseModel):
    """An item as returned by the API."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None = None
    owner_id: int


class UserCreate(BaseModel):
    """A sign-up: the password is hashed before it is stored."""

    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=8, max_length=128, pattern=NO_NUL)


class User(BaseModel):
    """A user as returned by the API, with their items."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    is_active: bool
    items: list[Item] = []
