"""The speed layer: native stand-ins for peewee's own code on the hottest calls.

peewee builds a query's SQL by walking its node tree, runs it through the
greenlet bridge from async code, and hydrates each row through the model's
``__init__``. For the calls an application makes most, this package does the
same work with less: SQL compiled once per shape and reused with new values,
statements awaited on the event loop directly, rows built the way peewee
would build them.

- :mod:`~fastpeewee.fast.compiled`: :class:`~fastpeewee.fast.compiled.Param`
  placeholders, :func:`~fastpeewee.fast.compiled.compile_query` and the
  compiled :class:`~fastpeewee.fast.compiled.Template`; model fingerprints and
  the bounded caches kept on a model.
- :mod:`~fastpeewee.fast.fastpath`: ``Model.aget_by_id``, ``acreate`` and
  ``asave`` on compiled SQL, one plan per (model, database, operation shape).
- :mod:`~fastpeewee.fast.shapes`: the SQL of common SELECT shapes, compiled
  once and checked against peewee's own.
- :mod:`~fastpeewee.fast.rows`: model hydration without ``__init__`` where the
  result is identical.
- :mod:`~fastpeewee.fast.selects`: ``db.list``, ``db.get`` and ``db.aexecute``
  of a select, awaited natively with the two modules above.
- :mod:`~fastpeewee.fast.bulk`: multi-row inserts split under the driver's
  parameter cap, or sent by ``COPY`` / ``executemany``.
- :mod:`~fastpeewee.fast.prepared`: ``db.prepare(query)``, compiled queries
  the application runs with new values (explicit, not a switchable fast path).

The rule for every fast path: it gives exactly what peewee's own path gives
(the same rows, objects, errors, cursor and side effects on the query or the
instance), or it steps aside and lets peewee's path run. It never gives
something nearly the same.

One switch turns the automatic fast paths off, so that an application (or
the test suite) can run on peewee's own paths alone and compare:

- per database: ``AsyncPostgresqlDatabase(..., fast_paths=False)`` (every
  database class takes it; it is stored as ``db.fast_paths``);
- per process: the environment variable ``FASTPEEWEE_FAST_PATHS=0`` (also
  ``false``, ``no``, ``off``), read once when fastpeewee is imported; it turns
  them off for every database, whatever its constructor was given.

With the switch off, ``db.get`` / ``db.list`` / ``db.aexecute`` and the model
methods run peewee's own code through ``db.run``, and a multi-row insert is
the one statement peewee builds (so the driver's parameter cap applies to it,
as it does in peewee). What stays usable is the explicit API:
:func:`~fastpeewee.fast.compiled.compile_query`, ``Template``, ``Param`` and
``db.prepare`` are called by the application itself, and work the same with
the switch off (prepared queries then build rows with peewee's own wrappers).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ENABLED", "ENV_VAR", "enabled"]

ENV_VAR = "FASTPEEWEE_FAST_PATHS"
"""The environment variable that turns the fast paths off process-wide (``=0``)."""

ENABLED: bool = os.environ.get(ENV_VAR, "1").strip().lower() not in {"0", "false", "no", "off"}
"""False when ``FASTPEEWEE_FAST_PATHS`` turned the fast paths off for this process
(read once, at import). A database made with ``fast_paths=True`` then gets False."""


def enabled(db: Any) -> bool:
    """True when ``db`` may take the automatic fast paths; every entry point asks.

    Example::

        if fast.enabled(db) and selects.native(db, query):
            return await selects.aexecute_select(db, query)
    """
    return db.fast_paths  # type: ignore[no-any-return]
