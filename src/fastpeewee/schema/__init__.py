"""Pydantic v2 schemas from peewee models, and loading rows with their relations.

``to_pydantic`` takes the arguments of ``playhouse.pydantic_utils.to_pydantic``
with the same meaning, and carries the columns' limits into the schema.
``afetch``/``fetch`` run a query with exactly the relations a schema reads, in a
fixed number of queries, and validate the rows with no hidden I/O.

pydantic is an optional dependency (``pip install 'fastpeewee[pydantic]'``):
it is imported on the first call, so ``import fastpeewee`` works without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import peewee

from ..errors import UnloadedRelation

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "Schemas",
    "UnloadedRelation",
    "afetch",
    "afetch_one",
    "fetch",
    "fetch_one",
    "schema_type",
    "schemas",
    "to_pydantic",
]

S = TypeVar("S", bound="BaseModel")
Variant = Literal["create", "update", "read"]


def _require_pydantic() -> None:
    try:
        import pydantic  # noqa: F401
    except ImportError as exc:
        raise peewee.ImproperlyConfigured(
            "pydantic is not installed: pip install 'fastpeewee[pydantic]'"
        ) from exc


def to_pydantic(
    model: type[peewee.Model],
    exclude: Any = None,
    include: Any = None,
    exclude_autofield: bool | None = None,
    model_name: str | None = None,
    relationships: Mapping[Any, Any] | None = None,
    base_model: type[BaseModel] | None = None,
    *,
    variant: Variant | None = None,
) -> type[BaseModel]:
    """A pydantic model for ``model``, as ``playhouse.pydantic_utils.to_pydantic`` makes it.

    Titles come from ``verbose_name``, descriptions from ``help_text`` and choices
    (a ``Literal``), defaults from the fields, foreign keys appear as ``<name>_id``
    unless ``relationships`` nests them (``{Item.owner: UserRead, User.items:
    ItemRead}``; a back-reference becomes a list). On top of that the schema
    refuses what the column cannot hold: strings over ``max_length`` or with NUL,
    integers outside the column's range (2**31 for IntegerField, 2**63 for
    BigIntegerField), decimals over ``max_digits``/``decimal_places``, NaN and
    infinite floats; NULL only where the column is nullable.

    ``variant`` picks the use: ``None`` (the playhouse schema), ``"create"``
    (no auto id), ``"update"`` (every field may be left out; use
    ``model_dump(exclude_unset=True)``), ``"read"`` (with the id; value limits
    are not re-checked on stored data). ``exclude_autofield`` defaults to True
    except for ``"read"``. Fields declared on ``base_model`` win over generated
    ones. Every schema reads attributes (``from_attributes=True``) and, in async
    code, raises :class:`UnloadedRelation` for a relation nobody loaded. Example::

        UserRead = to_pydantic(User, variant="read", relationships={User.items: list[ItemRead]})
    """
    _require_pydantic()
    from ._build import build_schema

    return build_schema(
        model,
        exclude=exclude,
        include=include,
        exclude_autofield=exclude_autofield,
        model_name=model_name,
        relationships=relationships,
        base_model=base_model,
        variant=variant,
    )


def schema_type(field: peewee.Field) -> Any:
    """The annotation ``to_pydantic`` gives ``field`` in a create schema.

    The value type with the column's limits, ``| None`` when nullable; a foreign
    key gets its target's type. Useful for path and query parameters, so that
    an id beyond the column's range is a validation error, not a database error::

        UserId = schema_type(User.id)      # int within -2**31 .. 2**31 - 1

        @app.get("/users/{user_id}")
        async def read_user(user_id: UserId): ...
    """
    _require_pydantic()
    from ._build import annotation_of

    return annotation_of(field, "create")


class Schemas(NamedTuple):
    """The create, update and read schemas of one model, from :func:`schemas`."""

    create: type[BaseModel]
    update: type[BaseModel]
    read: type[BaseModel]


def schemas(
    model: type[peewee.Model],
    *,
    exclude: Any = None,
    include: Any = None,
    relationships: Mapping[Any, Any] | None = None,
    base_model: type[BaseModel] | None = None,
    model_name: str | None = None,
) -> Schemas:
    """``to_pydantic`` three times: ``<Name>Create``, ``<Name>Update`` and ``<Name>Read``.

    ``relationships`` applies to the read schema only. Example::

        UserCreate, UserUpdate, UserRead = schemas(User, exclude=[User.password_hash])
    """
    name = model_name or model.__name__
    common: dict[str, Any] = {"exclude": exclude, "include": include, "base_model": base_model}
    return Schemas(
        create=to_pydantic(model, model_name=f"{name}Create", variant="create", **common),
        update=to_pydantic(model, model_name=f"{name}Update", variant="update", **common),
        read=to_pydantic(
            model,
            model_name=f"{name}Read",
            relationships=relationships,
            variant="read",
            **common,
        ),
    )


def _rows(query: Any, schema: type[BaseModel], prefetch_type: int | None) -> list[Any]:
    from ._load import load, plan_loading

    loading = plan_loading(query, schema, prefetch_type)
    rows = list(loading.query)
    if loading.node is not None:
        load(rows, loading.node, list)
    return rows


async def _arows(query: Any, schema: type[BaseModel], prefetch_type: int | None) -> list[Any]:
    from ..model import _database_of
    from ._load import aload, plan_loading

    loading = plan_loading(query, schema, prefetch_type)
    db = _database_of(loading.query.model)
    rows: list[Any] = await db.list(loading.query)
    if loading.node is not None:
        await aload(rows, loading.node, db.list)
    return rows


def fetch(query: Any, schema: type[S], *, prefetch_type: int | None = None) -> list[S]:
    """Sync: the rows of ``query`` with the relations ``schema`` reads, validated.

    Runs one query plus one per list relation (and per to-one relation under
    which a list is read), whatever the number of rows. Example::

        users = fetch(User.select().order_by(User.id), UserRead)
    """
    _require_pydantic()
    from ._load import validate

    return validate(_rows(query, schema, prefetch_type), schema)


def fetch_one(query: Any, schema: type[S], *, prefetch_type: int | None = None) -> S:
    """Sync: the first row of ``query`` as ``schema``; raises the model's ``DoesNotExist``."""
    _require_pydantic()
    from ._load import as_query, not_found, validate

    query = as_query(query).limit(1)
    rows = _rows(query, schema, prefetch_type)
    if not rows:
        raise not_found(query)
    return validate(rows, schema)[0]


async def afetch(query: Any, schema: type[S], *, prefetch_type: int | None = None) -> list[S]:
    """The rows of ``query`` with the relations ``schema`` reads, validated.

    Relations come in a fixed number of queries whatever the number of rows:
    to-one relations are joined, lists are loaded once for all rows
    (``prefetch_type``: a ``peewee.PREFETCH_TYPE``; by default the parents' keys
    for a query with a LIMIT up to 10,000, else a subquery). Validation runs
    after loading, so no relation is loaded lazily. Example::

        users = await afetch(User.select().limit(50), UserRead)
    """
    _require_pydantic()
    from ._load import validate

    return validate(await _arows(query, schema, prefetch_type), schema)


async def afetch_one(query: Any, schema: type[S], *, prefetch_type: int | None = None) -> S:
    """The first row of ``query`` as ``schema``; raises the model's ``DoesNotExist``.

    Example::

        user = await afetch_one(User.select().where(User.id == user_id), UserRead)
    """
    _require_pydantic()
    from ._load import as_query, not_found, validate

    query = as_query(query).limit(1)
    rows = await _arows(query, schema, prefetch_type)
    if not rows:
        raise not_found(query)
    return validate(rows, schema)[0]
