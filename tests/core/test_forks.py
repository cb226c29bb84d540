"""Fork safety: a forked child opens connections of its own and leaves the parent's alone.

The parent holds pooled connections (sync and async) when it forks, as
gunicorn's master does with ``preload_app`` after start-up queries, or a
program starting multiprocessing workers. The child must get fresh sessions
(another backend process id), and the parent's connections must still work
afterwards: the same sessions, not closed or spoken to by the child.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
from typing import Any

import pytest

from ..conftest import assert_no_leaks, make_database, settle

SESSION_ID = {
    "postgres": "SELECT pg_backend_pid()",
    "mysql": "SELECT CONNECTION_ID()",
    # SQLite has no server: a connection is told by the value of a temp table's row.
    "sqlite": "SELECT 0",
}


def _session(db: Any, backend: str) -> int:
    return int(db.execute_sql(SESSION_ID[backend]).fetchone()[0])


async def _asession(db: Any, backend: str) -> int:
    return int((await db.aexecute_sql(SESSION_ID[backend])).fetchone()[0])


def _in_child(db: Any, backend: str) -> dict[str, Any]:
    """What the child sees: its sessions (sync and async) and its pools' counters."""
    fresh = [(s.opened, s.in_use) for s in db.pool_stats()]
    sync = _session(db, backend)
    db.execute_sql("SELECT 1")

    async def main() -> int:
        try:
            return await _asession(db, backend)
        finally:
            await db.close_pool()

    return {"fresh": fresh, "sync": sync, "async": asyncio.run(main())}


def _child_main(db: Any, backend: str, conn: Any) -> None:
    try:
        conn.send(_in_child(db, backend))
    except BaseException as exc:
        conn.send({"error": repr(exc)})


def _run_with_os_fork(db: Any, backend: str) -> dict[str, Any]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            result = _in_child(db, backend)
        except BaseException as exc:
            result, code = {"error": repr(exc)}, 1
        with os.fdopen(write, "wb") as out:
            pickle.dump(result, out)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as data:
        result = pickle.load(data)
    os.waitpid(pid, 0)
    return result


def _run_with_multiprocessing(db: Any, backend: str) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_child_main, args=(db, backend, child))
    process.start()
    result = parent.recv() if parent.poll(30) else {"error": "no answer from the child"}
    process.join(30)
    assert process.exitcode == 0
    return result


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
async def test_a_forked_child_opens_its_own_connections(backend, request, tmp_path, how):
    db = make_database(backend, request, tmp_path, pool_min_size=1)
    try:
        # The parent holds a connection in each pool, and one of them in use.
        parent_async = await _asession(db, backend)
        parent_sync = await asyncio.to_thread(_session, db, backend)
        async with db:
            held = await _asession(db, backend)
            run = _run_with_os_fork if how == "os.fork" else _run_with_multiprocessing
            # Forked from the loop's thread (a thread of asyncio.to_thread's pool
            # would try to join itself when the multiprocessing child exits).
            child = run(db, backend)
            assert "error" not in child, child
            # The child's pools started empty: nothing inherited is counted or used.
            assert all(opened == 0 and in_use == 0 for opened, in_use in child["fresh"])
            if backend != "sqlite":
                assert {child["sync"], child["async"]}.isdisjoint(
                    {parent_async, parent_sync, held}
                )
            # The parent's held connection still works, on the same session.
            assert await _asession(db, backend) == held
        # And so do its pooled ones: the child neither used nor closed them.
        assert await asyncio.to_thread(_session, db, backend) == parent_sync
        await settle(db)
        assert_no_leaks(db)
        assert sum(s.closed for s in db.pool_stats()) == 0, db.pool_stats()
    finally:
        await db.close_pool()
        db.close_all()
