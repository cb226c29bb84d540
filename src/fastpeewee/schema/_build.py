"""Building pydantic models from peewee models: the ``to_pydantic`` machinery."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Optional, get_args, get_origin

import peewee
from pydantic import BaseModel, ConfigDict, ValidationInfo, create_model, model_validator
from pydantic import Field as PydanticField

from ._fields import field_kwargs, python_type
from ._relations import LOADED, check_loaded

__all__ = ["Variant", "annotation_of", "build_schema"]

Variant = Literal["create", "update", "read"]
_NAME_SUFFIX = {None: "Schema", "create": "Create", "update": "Update", "read": "Read"}


class SchemaBase(BaseModel):
    """Base of every generated schema: reads attributes, refuses lazy loads in async code."""

    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _relations_loaded(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not LOADED:  # afetch/fetch loaded every relation the schema reads
            check_loaded(cls, data)
        return data


class ReadSchemaBase(SchemaBase):
    """Base of read schemas: in the OpenAPI output schema every field is required."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


def _names(value: Any) -> set[str] | None:
    """Field names from names, fields or back-reference accessors (as playhouse does)."""
    if value is None:
        return None
    if isinstance(value, (str, peewee.Field, peewee.BackrefAccessor)):
        value = (value,)
    names = set()
    for item in value:
        if isinstance(item, peewee.BackrefAccessor):
            names.add(item.field.backref)
        elif isinstance(item, peewee.Field):
            names.add(item.name)
        elif isinstance(item, str):
            names.add(item)
        else:
            raise ValueError(
                "exclude/include entries must be field names, field objects or "
                f"back-references, got: {item!r}"
            )
    return names


def _split_relationships(
    relationships: Mapping[Any, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{Item.owner: S, User.items: list[S]}`` -> ({fk name: S}, {backref name: list[S]})."""
    to_one: dict[str, Any] = {}
    to_many: dict[str, Any] = {}
    for key, schema in relationships.items():
        if isinstance(key, peewee.ForeignKeyField):
            to_one[key.name] = schema
        elif isinstance(key, peewee.BackrefAccessor):
            to_many[key.field.backref] = schema
        else:
            raise ValueError(
                "relationships keys must be ForeignKeyField or back-reference accessors "
                f"(e.g. User.items), got: {key!r}"
            )
    return to_one, to_many


def _default(field: peewee.Field) -> dict[str, Any]:
    default = field.default
    if isinstance(default, peewee.Node):
        return {}  # a server-side default such as SQL("CURRENT_TIMESTAMP")
    if default is None:
        return {"default": None} if field.null else {}
    if callable(default):
        return {"default_factory": default}
    return {"default": default}


def annotation_of(field: peewee.Field, variant: Variant | None) -> Any:
    """The annotation of a plain column (a foreign key as its id) in ``variant``."""
    annotation = python_type(field, constrained=variant != "read")
    if field.null:
        annotation = Optional[annotation]  # noqa: UP045 - a runtime type expression
    return annotation


def _column(field: peewee.Field, variant: Variant | None) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of a plain column (a foreign key as its id)."""
    annotation = annotation_of(field, variant)
    kwargs = field_kwargs(field)
    if variant == "update":
        kwargs["default"] = None  # may be left out; None is only valid where NULL is
    else:
        kwargs.update(_default(field))
    return annotation, PydanticField(**kwargs)


def _nested(field: peewee.ForeignKeyField, schema: Any) -> tuple[Any, Any]:
    kwargs = field_kwargs(field)
    if field.null:
        schema = Optional[schema]  # noqa: UP045
        kwargs["default"] = None
    return schema, PydanticField(**kwargs)


def _selected(
    field: peewee.Field,
    exclude: set[str],
    include: set[str] | None,
    exclude_autofield: bool,
    nested: Iterable[str],
) -> bool:
    names = {field.name}
    if isinstance(field, peewee.ForeignKeyField):
        names |= {field.column_name, field.object_id_name}
    if names & exclude:
        return False
    if include is not None and not names & include and field.name not in nested:
        return False  # relationships entries are exempt from include=, as in playhouse
    return not (exclude_autofield and isinstance(field, peewee.AutoField))


def _fields(
    model: type[peewee.Model],
    variant: Variant | None,
    exclude: set[str],
    include: set[str] | None,
    exclude_autofield: bool,
    relationships: Mapping[Any, Any],
) -> dict[str, Any]:
    to_one, to_many = _split_relationships(relationships)
    fields: dict[str, Any] = {}
    for field in model._meta.sorted_fields:
        if not _selected(field, exclude, include, exclude_autofield, to_one):
            continue
        if isinstance(field, peewee.ForeignKeyField):
            if field.name in to_one:
                fields[field.name] = _nested(field, to_one[field.name])
                continue
            fields[field.object_id_name] = _column(field, variant)
        else:
            fields[field.name] = _column(field, variant)
    for name, schema in to_many.items():
        if name in exclude:
            continue
        if get_origin(schema) is not list:
            element = get_args(schema)[0] if get_args(schema) else schema
            raise ValueError(
                f"back-references must use a list type: {model.__name__}.{name} is a list "
                f"of rows, so write list[{getattr(element, '__name__', element)}], "
                f"got {schema!r}"
            )
        fields[name] = (schema, PydanticField(default_factory=list))
    return fields


def _bases(base_model: type[BaseModel] | None, variant: Variant | None) -> Any:
    ours = ReadSchemaBase if variant == "read" else SchemaBase
    return ours if base_model is None else (base_model, ours)


def build_schema(
    model: type[peewee.Model],
    *,
    exclude: Any = None,
    include: Any = None,
    exclude_autofield: bool | None = None,
    model_name: str | None = None,
    relationships: Mapping[Any, Any] | None = None,
    base_model: type[BaseModel] | None = None,
    variant: Variant | None = None,
) -> type[BaseModel]:
    """The implementation of :func:`fastpeewee.to_pydantic`."""
    if variant not in _NAME_SUFFIX:
        raise ValueError(f"variant must be 'create', 'update', 'read' or None, got {variant!r}")
    if relationships and variant in ("create", "update"):
        raise ValueError(
            f"relationships= is for read schemas; a {variant!r} schema takes foreign keys "
            "as <name>_id (nested writes are not supported)"
        )
    if exclude_autofield is None:
        exclude_autofield = variant != "read"
    fields = _fields(
        model,
        variant,
        _names(exclude) or set(),
        _names(include),
        exclude_autofield,
        relationships or {},
    )
    if base_model is not None:  # a field declared on the base wins (e.g. email: EmailStr)
        for declared in base_model.model_fields:
            fields.pop(declared, None)
    name = model_name or f"{model.__name__}{_NAME_SUFFIX[variant]}"
    schema: type[BaseModel] = create_model(name, __base__=_bases(base_model, variant), **fields)
    return schema
