"""What the API accepts and returns, generated from the models. Passwords go in, never out.

``to_pydantic`` carries each column's limits into the schema (lengths, the
32-bit id range, no NUL characters), so bad input is a 422 before it reaches
the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Path, Query
from pydantic import BaseModel, EmailStr, Field

from fastpeewee import schema_type, to_pydantic

from .models import Item, User

if TYPE_CHECKING:  # schema_type() is known when the code runs; mypy sees the value types
    UserId = int
    NewTitle = str
else:
    UserId = Annotated[schema_type(User.id), Path(ge=1, description="The user's id.")]
    # The column's own limits (length, no NUL), plus: not empty.
    NewTitle = Annotated[schema_type(Item.title), Field(min_length=1)]
Skip = Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Rows to return (at most 100).")]

# An item as returned: id, title, description, owner_id.
ItemRead = to_pydantic(Item, variant="read", model_name="Item")


class _NewItem(BaseModel):
    title: NewTitle


# A new item: its owner comes from the URL.
ItemCreate = to_pydantic(
    Item, variant="create", exclude=[Item.owner], base_model=_NewItem, model_name="ItemCreate"
)
# A user as returned, with their items; never the password hash.
UserRead = to_pydantic(
    User,
    variant="read",
    exclude=[User.hashed_password],
    relationships={User.items: list[ItemRead]},
    model_name="User",
)


class _SignUp(BaseModel):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=8, max_length=128)


# A sign-up: the password is hashed before it is stored.
UserCreate = to_pydantic(
    User,
    variant="create",
    exclude=[User.hashed_password, User.is_active],
    base_model=_SignUp,
    model_name="UserCreate",
)
