"""fastpeewee's pytest plugin (entry point ``pytest11: fastpeewee``): rollback-per-test fixtures.

Installed with fastpeewee, it changes nothing in a project until the project
asks for it: its fixtures run only when a test requests them, and the
autouse variant only with ``fastpeewee_autouse = true`` in the ini file. It is
a top-level module that imports fastpeewee only when a fixture runs, so a
test session that does not use it never loads the library (nor its drivers)
and a coverage run still measures fastpeewee's own import.

- ``fastpeewee_database``: the database under test. By default the object
  named by the ini option ``fastpeewee_database = package.module:attribute``
  (an :class:`~fastpeewee.AsyncDatabase`, or a callable returning one);
  override the fixture in a ``conftest.py`` to build it yourself.
- ``fastpeewee_transaction``: runs the test inside a
  :class:`~fastpeewee.testing.TestTransaction` on that database (everything
  rolled back at the end, leaks reported); yields it.
- ``fastpeewee_leak_check``: the leak check alone, for tests that need real
  commits.

A leak is reported as an error in the test's teardown, naming what was left
open. The fixtures are sync, so they serve ``def`` and ``async def`` tests
alike under pytest-asyncio or anyio's plugin.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fastpeewee import AsyncDatabase
    from fastpeewee.testing import TestTransaction

__all__ = ["fastpeewee_database", "fastpeewee_leak_check", "fastpeewee_transaction"]

_DATABASE_INI = "fastpeewee_database"
_AUTOUSE_INI = "fastpeewee_autouse"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _DATABASE_INI,
        "the database under test for fastpeewee's fixtures: package.module:attribute "
        "(an AsyncDatabase, or a callable returning one)",
        default="",
    )
    parser.addini(
        _AUTOUSE_INI,
        "run every test inside fastpeewee_transaction (rolled back at the end)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getini(_AUTOUSE_INI):
        config.pluginmanager.register(_Autouse(), "fastpeewee-autouse")


class _Autouse:
    """Registered only with ``fastpeewee_autouse = true``."""

    @pytest.fixture(autouse=True)
    def _fastpeewee_autouse(self, fastpeewee_transaction: TestTransaction) -> None:
        return None


def load_database(spec: str) -> AsyncDatabase:
    """The database ``package.module:attribute`` names (called if it is a callable)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise pytest.UsageError(
            f"{_DATABASE_INI} = {spec!r}: write it as package.module:attribute"
        )
    from fastpeewee import AsyncDatabase

    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not isinstance(target, AsyncDatabase) and callable(target):
        target = target()
    if not isinstance(target, AsyncDatabase):
        raise pytest.UsageError(
            f"{_DATABASE_INI} = {spec!r} gives {type(target).__name__}, not a fastpeewee database"
        )
    return target


@pytest.fixture
def fastpeewee_database(request: pytest.FixtureRequest) -> AsyncDatabase:
    """The database under test (the ini option ``fastpeewee_database``; override freely)."""
    spec = str(request.config.getini(_DATABASE_INI)).strip()
    if not spec:
        raise pytest.UsageError(
            "fastpeewee's fixtures need the database under test: set "
            "fastpeewee_database = package.module:attribute in the pytest ini file, "
            "or define a fastpeewee_database fixture in conftest.py"
        )
    return load_database(spec)


@pytest.fixture
def fastpeewee_transaction(fastpeewee_database: AsyncDatabase) -> Iterator[TestTransaction]:
    """The test inside one transaction of ``fastpeewee_database``, rolled back at the end."""
    from fastpeewee.testing import TestTransaction

    transaction = TestTransaction(fastpeewee_database)
    transaction.begin()
    yield transaction
    transaction.end()


@pytest.fixture
def fastpeewee_leak_check(fastpeewee_database: AsyncDatabase) -> Iterator[AsyncDatabase]:
    """Fail the test (at teardown) if it left a connection checked out or a transaction open."""
    yield fastpeewee_database
    if fastpeewee_database._pinned is not None:
        return  # inside fastpeewee_transaction, whose end runs the same check
    from fastpeewee.testing import ConnectionLeak, find_leaks

    leaks = find_leaks(fastpeewee_database)
    if leaks:
        raise ConnectionLeak("the test leaked:\n" + "\n".join(f"  - {x}" for x in leaks))
