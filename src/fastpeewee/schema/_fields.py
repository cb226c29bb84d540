"""One peewee field -> the Python type and pydantic ``Field`` of a schema attribute."""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import annotated_types
import peewee
from playhouse.reflection import FieldTypeMap
from pydantic import AfterValidator, AllowInfNan, condecimal

__all__ = ["INT_BITS", "field_kwargs", "python_type", "value_type"]

# Bits of the signed SQL integer types behind peewee's integer fields. IntegerField
# is a 4-byte INTEGER on PostgreSQL and MySQL, so 2**31 is refused before it reaches
# the server, on SQLite too, so that an app behaves the same on every backend.
INT_BITS: tuple[tuple[type[peewee.Field], int], ...] = (
    (peewee.SmallIntegerField, 16),
    (peewee.BigAutoField, 64),
    (peewee.BigIntegerField, 64),
    (peewee.IntegerField, 32),
)

# Fields whose Python value differs from what their column type suggests.
_SPECIAL_TYPES: tuple[tuple[type[peewee.Field], Any], ...] = (
    (peewee.TimestampField, datetime.datetime),  # a BIGINT column holding a datetime
    (peewee.IPField, str),  # a BIGINT column holding "10.0.0.1"
    (peewee.BinaryUUIDField, uuid.UUID),  # a BLOB column holding a UUID
    (peewee.BooleanField, bool),
    (peewee.BareField, Any),
)


# A lone UTF-16 surrogate ("\ud800" in JSON) is not text: no driver can encode
# it as UTF-8. pydantic refuses one only in a str with a length limit.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable_text(value: str) -> str:
    # PostgreSQL cannot store NUL in text; refuse it up front on every backend.
    if "\x00" in value:
        raise ValueError("text cannot contain NUL (\\x00) characters")
    if not value.isascii() and _SURROGATE.search(value):
        raise ValueError("text cannot contain lone surrogates (\\ud800-\\udfff)")
    return value


def value_type(field: peewee.Field) -> Any:
    """The Python type of a field's values (a foreign key takes its target's type)."""
    if isinstance(field, peewee.ForeignKeyField):
        field = field.rel_field
    enum_class = getattr(field, "enum_class", None)
    if enum_class is not None:
        return enum_class
    for klass, python in _SPECIAL_TYPES:
        if isinstance(field, klass):
            return python
    if field.field_type in ("JSON", "JSONB"):
        return Any  # an object, array, scalar or null
    return FieldTypeMap.get(field.field_type, Any)


def _int_bits(field: peewee.Field) -> int | None:
    if isinstance(field, peewee.ForeignKeyField):
        field = field.rel_field
    if isinstance(field, (peewee.TimestampField, peewee.IPField)):
        return None
    for klass, bits in INT_BITS:
        if isinstance(field, klass):
            return bits
    return None


def _constrained(field: peewee.Field, python: Any) -> Any:
    """``python`` annotated with the limits the column would otherwise enforce (or not).

    Plain ``annotated_types``/pydantic markers rather than ``Field(...)``, so the
    type also serves as a FastAPI path or query parameter annotation.
    """
    bits = _int_bits(field)
    if bits is not None:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return Annotated[python, annotated_types.Interval(ge=low, le=high)]
    if python is str:
        max_length = getattr(field, "max_length", None)
        if isinstance(max_length, int):
            python = Annotated[str, annotated_types.MaxLen(max_length)]
        return Annotated[python, AfterValidator(_storable_text)]
    if python is float:
        return Annotated[float, AllowInfNan(False)]
    if isinstance(field, peewee.DecimalField):
        return condecimal(max_digits=field.max_digits, decimal_places=field.decimal_places)
    return python


def _choices(field: peewee.Field) -> Sequence[tuple[Any, Any]] | None:
    """``field.choices`` as pairs, or None (none, or an enum field's).

    Choices given as an iterator (a generator) are listed once and kept on the
    field as a tuple, so that the ``Literal`` and the description, and every
    schema made later, all see them.
    """
    if not field.choices or getattr(field, "enum_class", None) is not None:
        return None
    if not isinstance(field.choices, Sequence):
        field.choices = tuple(field.choices)
    choices: Sequence[tuple[Any, Any]] = field.choices
    return choices or None


def python_type(field: peewee.Field, constrained: bool) -> Any:
    """The annotation for ``field``: its value type, choices as a ``Literal``, and,
    when ``constrained``, the length, range and digit limits of its column.
    Nullability is left to the caller."""
    choices = _choices(field)
    if choices:
        return Literal[tuple(value for value, _ in choices)]
    python = value_type(field)
    return _constrained(field, python) if constrained else python


def _description(field: peewee.Field) -> str | None:
    parts = [field.help_text] if field.help_text else []
    choices = _choices(field)
    if choices:
        listed = ", ".join(f"{value!r} = {label}" for value, label in choices)
        parts.append(f"Choices: {listed}")
    return " | ".join(parts) or None


def field_kwargs(field: peewee.Field) -> dict[str, Any]:
    """``title`` from ``verbose_name`` and ``description`` from ``help_text`` and choices."""
    kwargs: dict[str, Any] = {}
    if field.verbose_name:
        kwargs["title"] = field.verbose_name
    description = _description(field)
    if description:
        kwargs["description"] = description
    return kwargs
