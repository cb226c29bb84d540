"""gunicorn settings for tests/app/test_workers.py: ``preload_app``, and the master
queries the app's database (sync and async pools) before it forks the workers.

The backend ids of the master's sessions go to the file ``MASTER_SESSIONS``
names, so the test can check that they outlive the workers' start-up: a child
must neither use nor close what it inherited.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

preload_app = True


def when_ready(server: Any) -> None:
    """Run in the master after the app is loaded, before any worker is forked."""
    from examples.sql_app import models

    db: Any = models.database()
    sync_pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]

    async def ask() -> int:
        return int((await db.aexecute_sql("SELECT pg_backend_pid()")).fetchone()[0])

    async_pid = asyncio.run(ask())  # its connection stays in the pool, idle
    with open(os.environ["MASTER_SESSIONS"], "w") as out:
        out.write(f"{sync_pid} {async_pid}\n")
