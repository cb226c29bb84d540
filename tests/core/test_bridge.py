"""The greenlet bridge: sync peewee code whose waits happen on the event loop."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from fastpeewee import MissingGreenletBridge, await_, greenlet_spawn


async def test_sync_code_awaits_through_the_bridge():
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    def sync(x: int) -> int:
        return await_(double(x)) + await_(double(1))

    assert await greenlet_spawn(sync, 5) == 12


async def test_exceptions_cross_the_bridge_both_ways():
    async def boom() -> None:
        raise KeyError("from coroutine")

    def sync() -> str:
        try:
            await_(boom())
        except KeyError:
            return "caught in sync code"
        return "not reached"

    assert await greenlet_spawn(sync) == "caught in sync code"

    def fails() -> None:
        raise ValueError("from sync code")

    with pytest.raises(ValueError, match="from sync code"):
        await greenlet_spawn(fails)


async def test_context_variables_are_shared_with_the_caller():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("outer")

    def sync() -> str:
        seen = var.get()
        var.set("inner")
        return seen

    assert await greenlet_spawn(sync) == "outer"
    assert var.get() == "inner"


def test_await_outside_the_bridge_raises_without_warning():
    async def coro() -> None:
        return None

    with pytest.raises(MissingGreenletBridge, match=r"db\.run"):
        await_(coro())  # the coroutine is closed: no "never awaited" warning
