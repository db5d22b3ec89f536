"""Several tasks reading one stream: each message to one reader, and a
cancelled reader never takes the others down with it."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from wsmux import Multiplexer
from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio


async def test_a_reader_timing_out_leaves_the_other_waiting() -> None:
    """Fails on the old code under asyncio: both readers waited on one
    future, so the timeout of one cancelled the other (CancelledError)."""
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    timed_out = anyio.Event()

    async def patient() -> None:
        got.append(await stream.receive())

    async def impatient() -> None:
        with anyio.move_on_after(0.05):
            await stream.receive()
        timed_out.set()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            tg.start_soon(impatient)
            await timed_out.wait()
            await anyio.wait_all_tasks_blocked()
            hub.publish({"i": 1})
    assert got == [{"i": 1}]


async def test_each_message_goes_to_exactly_one_reader() -> None:
    hub = Hub()
    stream = hub.open_stream(maxsize=1000)
    seen: dict[int, list[int]] = {r: [] for r in range(4)}
    all_read = anyio.Event()

    async def reader(r: int) -> None:
        async for msg in stream:
            seen[r].append(msg["i"])
            if sum(map(len, seen.values())) == 300:
                all_read.set()
            await anyio.lowlevel.checkpoint()  # let the other readers take turns

    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            for r in seen:
                tg.start_soon(reader, r)
            await anyio.wait_all_tasks_blocked()
            for i in range(300):
                hub.publish({"i": i})
                if i % 7 == 0:
                    await anyio.lowlevel.checkpoint()
            await all_read.wait()
            hub.close()
    everything = sorted(i for got in seen.values() for i in got)
    assert everything == list(range(300))
    assert sum(1 for got in seen.values() if got) > 1
    for got in seen.values():
        assert got == sorted(got)


async def test_a_reader_cancelled_at_a_message_leaves_it_to_the_other() -> None:
    """Fails on the old code under asyncio: one cancelled reader cancelled the other too."""
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    scopes: list[anyio.CancelScope] = []

    async def reader(ready: anyio.Event) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            ready.set()
            async for msg in stream:
                got.append(msg)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                ready = anyio.Event()
                tg.start_soon(reader, ready)
                await ready.wait()
            await anyio.wait_all_tasks_blocked()
            hub.publish({"i": 1})
            scopes[0].cancel()
            await anyio.wait_all_tasks_blocked()
            hub.publish({"i": 2})
            await anyio.wait_all_tasks_blocked()
            stream.close_nowait()
    # The first reader may or may not take message 1 before it leaves; the
    # second reader takes the rest.
    assert got in ([{"i": 1}, {"i": 2}], [{"i": 2}])
    assert stream.statistics().delivered == 2


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_woken_reader_cancelled_before_reading_passes_the_wake_on() -> None:
    """A task cancelled outright (not through a cancel scope, which waits for
    the read to finish) after its wake-up: the other reader gets the message."""
    import asyncio

    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    first = asyncio.ensure_future(stream.receive())
    await anyio.wait_all_tasks_blocked()
    second = asyncio.ensure_future(stream.receive())
    await anyio.wait_all_tasks_blocked()
    hub.publish({"i": 1})  # wakes the first reader...
    first.cancel()  # ...which leaves before it reads
    with anyio.fail_after(2):
        got.append(await second)
    assert first.cancelled()
    assert got == [{"i": 1}]


async def test_readers_of_a_closed_stream_all_end() -> None:
    hub = Hub()
    stream = hub.open_stream()
    ended: list[int] = []

    async def reader(r: int) -> None:
        async for _ in stream:
            pass
        ended.append(r)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            for r in range(3):
                tg.start_soon(reader, r)
            await anyio.wait_all_tasks_blocked()
            stream.close_nowait()
    assert sorted(ended) == [0, 1, 2]


async def test_two_readers_of_a_multiplexer_stream() -> None:
    """The report's scenario, end to end: a reader under a timeout and one
    without, on a stream of a live connection."""
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, close_timeout=0.2)
        stream: Stream = mux.stream_filter([{"e": "tick"}])
        got: list[Any] = []
        timed_out = anyio.Event()

        async def patient() -> None:
            got.append(await stream.receive())

        async def impatient() -> None:
            with anyio.move_on_after(0.05):
                await stream.receive()
            timed_out.set()

        async with mux:
            with anyio.fail_after(3):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(patient)
                    tg.start_soon(impatient)
                    await timed_out.wait()
                    srv.broadcast({"e": "tick"})
    assert got == [{"e": "tick"}]
