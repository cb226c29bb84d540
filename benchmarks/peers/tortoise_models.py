"""Tortoise ORM models of the benchmark tables, built afresh for each backend.

Tortoise binds model classes to the first connection's SQL dialect, so each
``Tortoise.init`` gets a new module with new classes.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from tortoise import fields
from tortoise.models import Model


def _model(name: str, table: str, module: str) -> type[Any]:
    class Meta:
        pass

    Meta.table = table  # type: ignore[attr-defined]
    attrs = {
        "id": fields.IntField(primary_key=True),
        "name": fields.CharField(max_length=100),
        "description": fields.TextField(),
        "price": fields.IntField(),
        "quantity": fields.IntField(),
        "Meta": Meta,
        "__module__": module,
    }
    return type(name, (Model,), attrs)


def models_module(label: str) -> types.ModuleType:
    """A module holding fresh ``Item`` and ``BulkItem`` models, for ``Tortoise.init``."""
    module = types.ModuleType(f"bench_tortoise_{label}")
    module.Item = _model("Item", "bench_item", module.__name__)  # type: ignore[attr-defined]
    module.BulkItem = _model("BulkItem", "bench_bulk", module.__name__)  # type: ignore[attr-defined]
    module.__models__ = [module.Item, module.BulkItem]  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module  # Tortoise.init takes modules by name
    return module
