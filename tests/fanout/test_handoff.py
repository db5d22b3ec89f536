"""The handoff: a waiting asyncio reader is handed its message with the wake-up.

After its first wait, a stream's single asyncio reader waits on the stream's
own handoff, which ``_put`` resolves with the message, ``_wake`` with the
end, a gap or the error, and a :class:`~wsmux.fanout._wake.Waker` wakes many
such readers from one loop callback. These tests pin what must not change:
nothing is lost when such a reader is cancelled at the worst moment, several
readers still share one stream, and a woken task runs as itself (its
context, ``current_task()``). The async tests run on both backends (trio
waits as before and must behave the same); the ones about asyncio's
machinery run their own asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from wsmux import ConnectionGap
from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream
from wsmux.fanout._wake import HANDOFF, Handoff, handoff_for


async def _armed(stream: Stream) -> None:
    """Wait until the stream's one reader waits (on its handoff, under asyncio)."""
    with anyio.fail_after(10):
        while stream._event is None:
            await anyio.lowlevel.checkpoint()


async def _read_one_first(hub: Hub, stream: Stream, got: list[Any]) -> None:
    """Publish and read one message: the reader's later waits take the handoff."""
    await _armed(stream)
    hub.publish({"i": 0})
    with anyio.fail_after(10):
        while not got:
            await anyio.lowlevel.checkpoint()
    await _armed(stream)


def _run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


# -- the same on both backends --------------------------------------------------


@pytest.mark.anyio
async def test_a_reader_cancelled_as_its_message_arrives_leaves_it_to_the_next_read() -> None:
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    scopes: list[anyio.CancelScope] = []

    async def reader() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            async for msg in stream:
                got.append(msg)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await _read_one_first(hub, stream, got)
        hub.publish({"i": 1})
        scopes[0].cancel()
    rest = []
    while stream.statistics().buffered:
        rest.append(stream.receive_nowait())
    assert got + rest == [{"i": 0}, {"i": 1}]  # once, wherever it went
    assert stream.statistics().delivered == 2


@pytest.mark.anyio
async def test_the_end_reaches_a_reader_waiting_after_its_first_message() -> None:
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    ended = anyio.Event()

    async def reader() -> None:
        async for msg in stream:
            got.append(msg)
        ended.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await _read_one_first(hub, stream, got)
            hub.close()
            await ended.wait()
    assert got == [{"i": 0}]


@pytest.mark.anyio
async def test_the_error_and_a_gap_reach_a_reader_waiting_on_its_handoff() -> None:
    hub = Hub()
    stream = hub.open_stream(gaps="raise")
    got: list[Any] = []
    raised: list[BaseException] = []

    async def reader() -> None:
        while True:
            try:
                async for msg in stream:
                    got.append(msg)
                return
            except ConnectionGap as exc:
                raised.append(exc)
            except RuntimeError as exc:
                raised.append(exc)
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await _read_one_first(hub, stream, got)
            hub.mark_gap()
            while not raised:
                await anyio.lowlevel.checkpoint()
            await _armed(stream)
            hub.close(RuntimeError("the feed died"))
    assert [type(e) for e in raised] == [ConnectionGap, RuntimeError]


@pytest.mark.anyio
async def test_a_second_reader_arriving_shares_the_stream_with_the_waiting_one() -> None:
    hub = Hub()
    stream = hub.open_stream()
    got: list[Any] = []
    second: list[Any] = []

    async def first() -> None:
        async for msg in stream:
            got.append(msg)

    async def other() -> None:
        async for msg in stream:
            second.append(msg)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await _read_one_first(hub, stream, got)
            tg.start_soon(other)
            await anyio.wait_all_tasks_blocked()
            for i in (1, 2, 3):
                hub.publish({"i": i})
            while len(got) + len(second) < 4:
                await anyio.lowlevel.checkpoint()
            hub.close()
    # Each message read once, by either (which one is the scheduler's call).
    assert sorted(m["i"] for m in got + second) == [0, 1, 2, 3]


# -- asyncio's machinery --------------------------------------------------------

needs_handoff = pytest.mark.skipif(not HANDOFF, reason="handoffs need CPython's C future")


@needs_handoff
def test_task_cancel_after_the_handoff_gives_the_message_back() -> None:
    """Fails without Handoff.cancel's take-back: the message, handed to a task
    that is cancelled before it runs, would be lost (WouldBlock here)."""

    async def main() -> None:
        hub = Hub()
        stream = hub.open_stream()
        got: list[Any] = []

        async def reader() -> None:
            async for msg in stream:
                got.append(msg)

        task = asyncio.create_task(reader())
        await _read_one_first(hub, stream, got)
        assert stream._event is stream._handoff  # waits on its handoff
        hub.publish({"i": 1})
        assert stream._handoff is not None and stream._handoff.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert got == [{"i": 0}]
        assert stream.receive_nowait() == {"i": 1}
        assert stream.statistics().delivered == 2

    _run(main)


@needs_handoff
def test_task_cancel_after_a_gap_was_handed_over_keeps_the_gap() -> None:
    async def main() -> None:
        hub = Hub()
        stream = hub.open_stream(gaps="raise")
        got: list[Any] = []

        async def reader() -> None:
            async for msg in stream:
                got.append(msg)

        task = asyncio.create_task(reader())
        await _read_one_first(hub, stream, got)
        hub.mark_gap()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(ConnectionGap):
            stream.receive_nowait()

    _run(main)


@needs_handoff
def test_anext_under_wait_for_and_gather() -> None:
    """``anext(stream)`` may be the handoff itself: a timeout cancels it and
    leaves the stream readable; two at once each get their own message."""

    async def main() -> None:
        hub = Hub()
        stream = hub.open_stream()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        hub.publish({"i": 0})
        assert await first == {"i": 0}
        # Now anext() returns the stream's handoff.
        pending = anext(stream)
        assert isinstance(pending, Handoff)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pending, 0.01)
        hub.publish({"i": 1})
        assert await anext(stream) == {"i": 1}
        both = asyncio.gather(anext(stream), anext(stream))
        await asyncio.sleep(0)
        hub.publish({"i": 2})
        hub.publish({"i": 3})
        assert sorted(m["i"] for m in await both) == [2, 3]
        assert stream.statistics().delivered == 4

    _run(main)


@needs_handoff
def test_woken_tasks_run_as_themselves_from_one_loop_callback() -> None:
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var")

    async def main() -> None:
        hub = Hub()
        streams = [hub.open_stream({"k": k}) for k in range(3)]
        seen: list[tuple[int, Any, bool]] = []
        started = [0]

        async def reader(k: int, stream: Stream) -> None:
            var.set(k)
            started[0] += 1
            async for msg in stream:
                seen.append((var.get(), msg["k"], asyncio.current_task() is tasks[k]))
                if msg.get("last"):
                    return

        tasks = [asyncio.create_task(reader(k, s)) for k, s in enumerate(streams)]
        for k in range(3):  # each reader's first wait is plain; then the handoffs
            await _armed(streams[k])
            hub.publish({"k": k})
        for k in range(3):
            with anyio.fail_after(10):
                while streams[k]._handoff is None or streams[k]._event is not streams[k]._handoff:
                    await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        before = len(loop._ready)  # type: ignore[attr-defined]
        for k in range(3):
            hub.publish({"k": k, "last": True})
        # Three wakes, one callback queued.
        assert len(loop._ready) == before + 1  # type: ignore[attr-defined]
        await asyncio.gather(*tasks)
        assert sorted(seen) == [(k, k, True) for k in range(3) for _ in (0, 1)]

    _run(main)


@needs_handoff
def test_the_waker_survives_a_failing_callback_and_requeues_on_keyboard_interrupt() -> None:
    loop = asyncio.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    calls: list[str] = []
    try:
        handoffs = [handoff_for(loop, None) for _ in range(3)]
        assert all(h is not None for h in handoffs)
        h1, h2, h3 = handoffs  # type: ignore[misc]
        assert h1 is not None and h2 is not None and h3 is not None

        def boom(_fut: Any) -> None:
            raise ValueError("boom")

        def stop(_fut: Any) -> None:
            raise KeyboardInterrupt

        # With a context, as a task adds its wake-up.
        h1.add_done_callback(boom, context=contextvars.copy_context())
        h2.add_done_callback(stop, context=contextvars.copy_context())
        h3.add_done_callback(lambda _fut: calls.append("h3"), context=contextvars.copy_context())
        for h in (h1, h2, h3):
            h.set_result(None)
            h.wake()
        waker = h1._waker
        with pytest.raises(KeyboardInterrupt):
            waker.flush()
        assert [c["exception"].args for c in errors] == [("boom",)]
        assert waker.pending == [h3] and waker.scheduled  # not lost
        waker.flush()
        assert calls == ["h3"]
    finally:
        loop.close()
