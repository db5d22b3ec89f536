"""Shared fixtures: both anyio backends, and leak checks after every test."""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both backends; a missing trio fails, not skips."""
    return str(request.param)


def _live_tasks() -> list[str]:
    from wsmux.connection._transport import current_backend

    if current_backend() == "trio":
        import trio

        names: list[str] = []
        stack: list[Any] = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            names.append(task.name)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return names
    import asyncio

    return [t.get_name() + ":" + repr(t.get_coro()) for t in asyncio.all_tasks()]


@pytest.fixture
async def _task_leak_check() -> AsyncIterator[None]:
    before = len(_live_tasks())
    yield
    with anyio.move_on_after(2):
        while len(_live_tasks()) > before:
            await anyio.sleep(0.01)
    after = _live_tasks()
    if len(after) > before:
        pytest.fail(f"tasks leaked by the test: {after}")


def _wsmux_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wsmux")]


@pytest.fixture(autouse=True)
def _leak_checks(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("anyio") is not None:
        request.getfixturevalue("_task_leak_check")
    before = set(_wsmux_threads())
    yield
    gc.collect()
    for thread in set(_wsmux_threads()) - before:
        thread.join(2)
    leaked = [t.name for t in set(_wsmux_threads()) - before if t.is_alive()]
    if leaked:
        pytest.fail(f"threads leaked by the test: {leaked}")
