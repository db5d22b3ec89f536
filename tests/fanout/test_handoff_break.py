"""Breaking the handoff (36f06fd): what a demanding user does to a stream's waiting reader.

Each test is a scenario that held before the handoff (a stream's single
asyncio reader waiting on the stream's own re-armed future, resolved with
the message itself) and must hold after it: no message lost or read twice,
no foreign exception in a cancelled task, no hang, nothing read after
``close_nowait()``. The async tests run on both anyio backends (trio never
waits on a handoff and shows what the contract is).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream


async def _until(check: Any, what: str) -> None:
    with anyio.fail_after(10):
        while not check():
            await anyio.lowlevel.checkpoint()


async def _on_handoff(stream: Stream) -> None:
    """Wait until the stream's one reader waits (on its handoff under asyncio)."""
    if stream._loop is False or getattr(stream, "_handoff", None) is None:
        await _until(lambda: stream._event is not None, "a waiting reader")
    else:
        await _until(lambda: stream._event is stream._handoff, "the reader on its handoff")


async def _first_wait_done(hub: Hub, stream: Stream, got: list[Any]) -> None:
    """Publish and have one message read after a wait: later waits take the handoff."""
    await _until(lambda: stream._event is not None, "a waiting reader")
    hub.publish({"i": 0})
    await _until(lambda: len(got) >= 1, "the first message")
    await _on_handoff(stream)


# -- two workers of one queue ---------------------------------------------------


@pytest.mark.anyio
async def test_a_busy_worker_does_not_take_the_message_handed_to_the_waiting_one() -> None:
    """Worker A waits on the handoff; B finishes a job and asks for the next
    message in the same turn the publisher hands one to A. B must not re-arm
    A's handoff: A would die of InvalidStateError and the message be lost
    (counted delivered, read by no one)."""
    hub = Hub()
    stream = hub.open_stream()
    got: dict[str, list[Any]] = {"A": [], "B": []}
    proceed = anyio.Event()

    async def worker(name: str) -> None:
        if name == "B":
            await proceed.wait()  # busy with something else until now
        async for msg in stream:
            got[name].append(msg)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, "A")
            tg.start_soon(worker, "B")
            await _first_wait_done(hub, stream, got["A"])
            # One turn: B is made runnable, then a message is handed to A.
            proceed.set()
            hub.publish({"i": 1})
            await _until(lambda: len(got["A"]) + len(got["B"]) >= 2, "message 1 read")
            hub.close()
    assert sorted(m["i"] for m in got["A"] + got["B"]) == [0, 1]
    assert stream.statistics().delivered == 2


# -- taking over from a cancelled reader ---------------------------------------


async def _take_over(reader_kind: str) -> tuple[list[Any], Any]:
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    scope = anyio.CancelScope()

    async def reader() -> None:
        with scope:
            if reader_kind == "iter":
                async for msg in stream:
                    got.append(msg)
            else:
                while True:
                    got.append(await stream.receive())

    async def publish_later() -> None:
        await _until(lambda: stream._event is not None, "the new reader waiting")
        hub.publish({"i": 1})

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await _first_wait_done(hub, stream, got)
            # Stop the old reader and read on from here, in the same turn.
            scope.cancel()
            tg.start_soon(publish_later)
            with anyio.fail_after(5):
                msg = await stream.receive()
    return got, msg


@pytest.mark.anyio
async def test_reading_on_at_once_after_cancelling_the_reader_in_async_for() -> None:
    """The cancelled reader must end cancelled (not of InvalidStateError
    thrown by the wake-up queued for it, run on the re-armed handoff)."""
    got, msg = await _take_over("iter")
    assert got == [{"i": 0}] and msg == {"i": 1}


@pytest.mark.anyio
async def test_reading_on_at_once_after_cancelling_the_reader_in_receive() -> None:
    """As above with the old reader in receive(): its clean-up (_take_back
    of a handoff it no longer owns) also unhooks the new reader's wait, so
    the new reader hangs with the message buffered."""
    got, msg = await _take_over("receive")
    assert got == [{"i": 0}] and msg == {"i": 1}


# -- nothing is read after close ----------------------------------------------


@pytest.mark.anyio
async def test_nothing_is_read_after_close_nowait() -> None:
    """``close_nowait()``: "stop receiving, drop what is buffered". A message
    handed to the waiting reader but not yet read by it must be dropped too,
    as before the handoff (it was buffered then)."""
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    done = anyio.Event()

    async def reader() -> None:
        async for msg in stream:
            got.append(msg)
        done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await _first_wait_done(hub, stream, got)
            hub.publish({"i": 1})
            stream.close_nowait()
            closed_at = list(got)
            await done.wait()
    assert got == closed_at == [{"i": 0}]
    stats = stream.statistics()
    assert (stats.delivered, stats.dropped) == (1, 1)
    assert hub.dropped() == 1


@pytest.mark.anyio
async def test_a_removed_async_handler_is_not_called_again() -> None:
    """``remove_handler``: "Stop calling a handler"; a message published just
    before must not reach it afterwards."""
    hub = Hub()
    calls: list[Any] = []

    async def handler(msg: Any) -> None:
        calls.append(msg)

    hub.add_handler(handler)
    with anyio.fail_after(10):
        async with hub:
            stream = hub._handlers[handler]
            assert isinstance(stream, Stream)
            await _first_wait_done(hub, stream, calls)
            hub.publish({"i": 1})
            hub.remove_handler(handler)
            removed_at = list(calls)
            await _until(lambda: hub._running == 0, "the handler's task ended")
    assert calls == removed_at == [{"i": 0}]


# -- publish ----------------------------------------------------------------------


def test_a_handler_publishing_from_inside_publish_does_not_duplicate() -> None:
    """A sync handler that publishes a derived message (re-entrant publish)
    must not make a multi-clause stream get the outer message twice: the
    bucket delivery reads ``self._stamp``, which the inner publish moved on."""
    hub = Hub()
    stream = hub.open_stream([{"a": 1}, {"b": 2}])

    def republish(msg: Any) -> None:
        if "derived" not in msg:
            hub.publish({"derived": True})

    hub.add_handler(republish, {"a": 1})
    hub.publish({"a": 1, "b": 2})
    assert stream.statistics().buffered == 1
    assert stream.receive_nowait() == {"a": 1, "b": 2}


# -- anext(stream) is a coroutine no more ------------------------------------------


def test_create_task_of_anext_still_works() -> None:
    """``asyncio.create_task(anext(stream))`` (racing streams) worked before
    36f06fd; now it raises TypeError once the stream's reader has waited once
    (``anext`` returns the Handoff future, not a coroutine)."""

    async def main() -> None:
        hub = Hub()
        stream = hub.open_stream()
        for i in range(2):
            task = asyncio.create_task(anext(stream))  # type: ignore[arg-type]
            await asyncio.sleep(0)
            hub.publish({"i": i})
            assert await task == {"i": i}

    asyncio.run(main())


# -- a second reader leaving ------------------------------------------------------


def test_a_second_reader_cancelled_after_its_wake_leaves_the_first_waiting() -> None:
    """A waits on its handoff, C joins (a group). m1 goes to A, m2 wakes C,
    then C is cancelled before it ran (``task.cancel()``: its future is done,
    so it is cancelled at its next step). A reads m2 too (buffered) and
    waits again, alone on the handoff; C passes its wake-up on (``forget``
    -> ``wake_one``), which must not unhook A's wait when there is nothing
    to hand A: else A never wakes again (m3 stays buffered)."""

    async def main() -> None:
        hub = Hub()
        stream = hub.open_stream()
        got: list[Any] = []

        async def reader() -> None:
            async for msg in stream:
                got.append(msg)

        task_a = asyncio.create_task(reader())
        await _first_wait_done(hub, stream, got)
        task_c = asyncio.create_task(reader())
        await _until(lambda: stream._event.__class__.__name__ == "Readers", "C waiting")
        hub.publish({"i": 1})
        hub.publish({"i": 2})
        task_c.cancel()
        await _until(lambda: task_c.done() and len(got) >= 3, "C gone, m1 and m2 read")
        hub.publish({"i": 3})
        hub.close()  # A reads m3, then its iteration ends
        await asyncio.wait([task_a], timeout=5)
        hung = not task_a.done()
        task_a.cancel()
        assert not hung, f"A never woke: {stream.statistics()}"
        assert sorted(m["i"] for m in got) == [0, 1, 2, 3]

    asyncio.run(main())
