"""Readiness for load balancers and orchestrators, importable without any web framework.

A ``/ready`` endpoint answers 200 while the database answers a ping and 503
while it does not, so traffic goes elsewhere during an outage and comes back
once it ends. In FastAPI or Starlette::

    from fastpeewee.integrations.health import readiness

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok, detail = await readiness(db)
        return JSONResponse({"detail": detail}, status_code=200 if ok else 503)

``detail`` names the error's class only (never a message, which may quote a
host or a DSN); the full error goes to the ``fastpeewee.integrations`` log
with passwords masked. Each database gets one ping, all at once: the whole
check takes at most ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .core import as_databases, describe_error

if TYPE_CHECKING:
    from ..database import AsyncDatabase

__all__ = ["readiness"]

logger = logging.getLogger("fastpeewee.integrations")


async def readiness(
    database: AsyncDatabase | Sequence[AsyncDatabase], *, timeout: float = 2.0
) -> tuple[bool, str]:
    """``(True, "ready")`` when every database answers a ping within ``timeout``
    seconds, else ``(False, what failed)``. Never raises for a database error.

    Example::

        ok, detail = await readiness(db)     # (False, "database 1 of 1 unavailable: PoolBackoff")
    """
    databases = as_databases(database)
    results = await asyncio.gather(
        *(db.aping(timeout) for db in databases), return_exceptions=True
    )
    for index, result in enumerate(results, 1):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            logger.warning("readiness: database %d not ready: %s", index, describe_error(result))
            name = type(result).__name__
            return False, f"database {index} of {len(databases)} unavailable: {name}"
    return True, "ready"
