"""Which attributes of a schema are relations of a model, and whether they are loaded.

A schema attribute is a relation when the model has a foreign key of that name
and the annotation is a nested schema (``owner: UserRead``, optionally
``| None``), or a back-reference of that name and the annotation is a sequence
of a nested schema (``items: list[ItemRead]``). Schemas written by hand are
read the same way as those made by :func:`fastpeewee.to_pydantic`.
"""

from __future__ import annotations

import asyncio
import collections.abc
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import peewee
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..bridge import in_bridge
from ..contracts.peewee import related_objects
from ..errors import UnloadedRelation
from ..fast.compiled import model_cache

__all__ = ["LOADED", "Relation", "check_loaded", "relations_of"]

LOADED: Any = types.MappingProxyType({"fastpeewee": "relations loaded"})
"""The validation context of rows loaded by ``afetch``/``fetch``: with it, the
schemas made by ``to_pydantic`` skip :func:`check_loaded` (every relation the
schema reads, at every depth, was loaded with the rows)."""

_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.Iterable,
    collections.abc.Collection,
)


@dataclass(frozen=True)
class Relation:
    """One relation a schema reads: ``attr`` on the instance, through ``field``."""

    attr: str
    field: peewee.ForeignKeyField
    many: bool  # True for a back-reference (a list of rows), False for a foreign key
    schema: type[BaseModel]

    @property
    def target(self) -> type[peewee.Model]:
        """The model of the related rows."""
        return self.field.model if self.many else self.field.rel_model  # type: ignore[no-any-return]

    @property
    def accessor(self) -> Any:
        """What ``peewee.Load`` takes: the foreign key, or the back-reference accessor."""
        return getattr(self.field.rel_model, self.attr) if self.many else self.field


def _strip(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X and ``X | None`` -> X; anything else unchanged."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _schema_class(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _element_schema(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    args = get_args(annotation)
    if get_origin(annotation) in _SEQUENCES and args:
        return _schema_class(args[0])
    return None


def _attribute(name: str, info: FieldInfo) -> str:
    # With from_attributes pydantic reads the validation alias, else the alias.
    for alias in (info.validation_alias, info.alias):
        if isinstance(alias, str):
            return alias
    return name


def _relation(model: type[peewee.Model], attr: str, annotation: Any) -> Relation | None:
    field = model._meta.fields.get(attr)
    if isinstance(field, peewee.ForeignKeyField):
        nested = _schema_class(annotation)
        return Relation(attr, field, False, nested) if nested is not None else None
    accessor = getattr(model, attr, None)
    if isinstance(accessor, peewee.BackrefAccessor):
        nested = _element_schema(annotation)
        return Relation(attr, accessor.field, True, nested) if nested is not None else None
    return None


RELATIONS_MAX = 64
"""Schemas whose relations are kept per model (on the model, so that a model made
at runtime is freed with them), the oldest dropped first."""


def relations_of(schema: type[BaseModel], model: type[peewee.Model]) -> tuple[Relation, ...]:
    """The relations of ``model`` that ``schema`` reads, in field order."""
    cache = model_cache(model, "relations", RELATIONS_MAX)
    found = cache.get(schema)
    if found is None:
        found = _relations_of(schema, model)
        cache.put(schema, found)
    return found


def _relations_of(schema: type[BaseModel], model: type[peewee.Model]) -> tuple[Relation, ...]:
    found = []
    for name, info in schema.model_fields.items():
        relation = _relation(model, _attribute(name, info), info.annotation)
        if relation is not None:
            found.append(relation)
    return tuple(found)


def is_loaded(instance: peewee.Model, relation: Relation) -> bool:
    """True when reading the relation on ``instance`` runs no query."""
    if relation.many:
        return relation.attr in instance.__dict__  # set by peewee's Load / prefetch
    name = relation.field.name
    return name in related_objects(instance) or instance.__data__.get(name) is None


def _in_async_code() -> bool:
    return asyncio._get_running_loop() is not None and not in_bridge()


def check_loaded(schema: type[BaseModel], instance: Any) -> None:
    """Raise :class:`UnloadedRelation` when async code would lazily load a relation.

    Sync code (a thread, or ``db.run``) may still load lazily, as peewee does.
    """
    if not isinstance(instance, peewee.Model) or not _in_async_code():
        return
    for relation in relations_of(schema, type(instance)):
        if not is_loaded(instance, relation):
            raise UnloadedRelation(_unloaded_message(schema, instance, relation))


def _unloaded_message(schema: type[BaseModel], instance: peewee.Model, rel: Relation) -> str:
    model = type(instance).__name__
    return (
        f"{schema.__name__}.{rel.attr}: {model}.{rel.attr} is not loaded, and loading it "
        "here would run a blocking query on the event loop (one per row). Load the rows "
        f"with their relations: `await fastpeewee.afetch({model}.select(), {schema.__name__})` "
        "or `await fastpeewee.afetch_one(query, schema)`, which run a fixed number of "
        "queries whatever the number of rows."
    )
