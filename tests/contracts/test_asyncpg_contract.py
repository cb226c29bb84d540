"""asyncpg's private surface as fastpeewee uses it (fastpeewee.contracts.asyncpg).

An asyncpg release that renames or reshapes one of these names fails here, by
name, rather than somewhere in the middle of a query.
"""

from __future__ import annotations

import inspect

import pytest

from fastpeewee.contracts import asyncpg as contract

from ..conftest import make_database

asyncpg = pytest.importorskip("asyncpg")


class _Gone:
    pass


class _NotACoroutine:
    def _execute(self, query, args, limit, timeout, *, return_status=False):
        return None


class _Reshaped:
    async def _execute(self, sql, limit, args, timeout, *, return_status=False):
        return None


def test_execute_has_the_signature_used():
    params = inspect.signature(asyncpg.Connection._execute).parameters
    assert list(params)[:5] == ["self", *contract.EXECUTE_POSITIONAL]
    for keyword in contract.EXECUTE_KEYWORDS:
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.iscoroutinefunction(asyncpg.Connection._execute)


def test_check_accepts_the_installed_asyncpg(monkeypatch):
    monkeypatch.setattr(contract, "_checked", False)
    contract.check(asyncpg.Connection)


@pytest.mark.parametrize("fake", [_Gone, _NotACoroutine, _Reshaped], ids=lambda c: c.__name__)
def test_check_names_the_asyncpg_version_when_the_shape_changed(monkeypatch, fake):
    monkeypatch.setattr(contract, "_checked", False)
    with pytest.raises(contract.AsyncpgContractError, match=asyncpg.__version__):
        contract.check(fake)


class _NoCancellations:
    __slots__ = ()

    async def _execute(self, query, args, limit, timeout, *, return_status=False):
        return None


def test_check_names_the_asyncpg_version_when_cancellations_are_gone(monkeypatch):
    assert "_cancellations" in asyncpg.Connection.__slots__
    monkeypatch.setattr(contract, "_checked", False)
    with pytest.raises(contract.AsyncpgContractError, match="_cancellations"):
        contract.check(_NoCancellations)


def test_detach_cancellations_names_the_asyncpg_version_when_gone():
    with pytest.raises(contract.AsyncpgContractError, match=asyncpg.__version__):
        contract.detach_cancellations(object())


def test_transport_names_the_asyncpg_version_when_gone():
    with pytest.raises(contract.AsyncpgContractError, match=asyncpg.__version__):
        contract.transport(object())


@pytest.mark.backends("postgres")
async def test_execute_returns_rows_status_and_completed(backend, request, tmp_path):
    db = make_database(backend, request, tmp_path)
    try:
        async with db:
            raw = db.connection()
            assert contract.transport(raw) is not None
            execute = contract.executor(raw)
            rows, status, completed = await execute("SELECT $1::int AS a UNION ALL SELECT 2", [1])
            assert [tuple(r) for r in rows] == [(1,), (2,)]
            assert list(rows[0].keys()) == ["a"]
            assert status == b"SELECT 2"
            assert completed is True
            await raw.execute("CREATE TEMP TABLE t (a int)")
            await raw.execute("INSERT INTO t VALUES (1), (2), (3)")
            rows, status, _ = await execute("UPDATE t SET a = a + 1 WHERE a > $1", [1])
            assert (rows, status) == ([], b"UPDATE 2")
    finally:
        await db.close_pool()


def test_refused_before_sending_reads_asyncpg_refusal():
    refusal = asyncpg.exceptions.InternalClientError(
        "cannot perform operation: another operation (2) is in progress"
    )
    assert contract.refused_before_sending(refusal)
    assert not contract.refused_before_sending(asyncpg.exceptions.InternalClientError("other"))
