"""Reading a stream in batches: everything buffered in one step, with the
lag, gap and end semantics of single reads."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from wsmux import ConnectionGap, Multiplexer, StreamClosed, StreamLagged
from wsmux.fanout._hub import Hub
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio


def _fill(hub: Hub, start: int, stop: int) -> None:
    for i in range(start, stop):
        hub.publish({"i": i})


def _ids(batch: list[Any]) -> list[int]:
    return [m["i"] for m in batch]


async def test_a_batch_is_everything_buffered_in_order_up_to_the_limit() -> None:
    hub = Hub()
    stream = hub.open_stream()
    _fill(hub, 0, 10)
    assert _ids(await stream.receive_batch(limit=4)) == [0, 1, 2, 3]
    assert _ids(stream.receive_batch_nowait()) == list(range(4, 10))
    with pytest.raises(anyio.WouldBlock):
        stream.receive_batch_nowait()
    stats = stream.statistics()
    assert (stats.delivered, stats.buffered, stats.dropped) == (10, 0, 0)
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError):
            stream.receive_batch_nowait(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            stream.batches(bad)  # type: ignore[arg-type]


async def test_a_lag_is_raised_before_the_batch_that_follows_it() -> None:
    hub = Hub()
    stream = hub.open_stream(maxsize=4)
    _fill(hub, 0, 10)  # 0..5 lost to overflow, 6..9 kept
    with pytest.raises(StreamLagged) as info:
        await stream.receive_batch()
    assert info.value.count == 6
    assert _ids(await stream.receive_batch()) == [6, 7, 8, 9]
    # Iteration goes on after a lag, as with single reads.
    _fill(hub, 10, 20)
    got: list[int] = []
    with pytest.raises(StreamLagged):
        async for batch in stream.batches():
            got += _ids(batch)
    hub.close()
    async for batch in stream.batches():
        got += _ids(batch)
    assert got == [16, 17, 18, 19]


async def test_a_gap_ends_the_batch_before_it_and_is_raised_next() -> None:
    hub = Hub()
    stream = hub.open_stream(gaps="raise")
    _fill(hub, 0, 3)
    hub.mark_gap()
    _fill(hub, 3, 5)
    assert _ids(stream.receive_batch_nowait()) == [0, 1, 2]
    with pytest.raises(ConnectionGap):
        await stream.receive_batch()
    assert _ids(await stream.receive_batch()) == [3, 4]
    # A gap at the very front, and a limit that stops before a gap.
    hub.mark_gap()
    _fill(hub, 5, 8)
    hub.mark_gap()
    with pytest.raises(ConnectionGap):
        stream.receive_batch_nowait()
    assert _ids(stream.receive_batch_nowait(limit=2)) == [5, 6]
    assert _ids(stream.receive_batch_nowait(limit=5)) == [7]
    with pytest.raises(ConnectionGap):
        stream.receive_batch_nowait()
    assert stream.statistics().delivered == 8


async def test_batches_drain_then_end_or_raise_the_error() -> None:
    hub = Hub()
    clean, failing = hub.open_stream(), hub.open_stream()
    _fill(hub, 0, 5)
    hub.close(RuntimeError("died"))
    with pytest.raises(RuntimeError, match="died"):
        async for batch in failing.batches():
            assert _ids(batch) == list(range(5))
    hub2 = Hub()
    clean = hub2.open_stream()
    _fill(hub2, 0, 5)
    hub2.close()
    assert [_ids(b) async for b in clean.batches(limit=3)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(anyio.EndOfStream):
        await clean.receive_batch()
    await clean.close()
    with pytest.raises(StreamClosed):
        clean.receive_batch_nowait()
    assert [b async for b in clean.batches()] == []


async def test_a_waiting_batch_reader_wakes_and_a_closed_stream_ends_it() -> None:
    hub = Hub()
    stream = hub.open_stream()
    got: list[list[int]] = []
    ready = anyio.Event()

    async def reader() -> None:
        ready.set()
        async for batch in stream.batches():
            got.append(_ids(batch))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await ready.wait()
            await anyio.wait_all_tasks_blocked()
            _fill(hub, 0, 3)  # one wake-up hands over all three
            while not got:
                await anyio.sleep(0.001)
            await stream.close()
    assert got == [[0, 1, 2]]


async def test_a_batch_frees_room_for_a_blocked_publisher() -> None:
    hub = Hub()
    stream = hub.open_stream(maxsize=4, overflow="block")
    published = 0

    async def publisher() -> None:
        nonlocal published
        for i in range(20):
            if hub.publish({"i": i}):
                await hub.relieve()
            published += 1

    got: list[int] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher)
            while len(got) < 20:
                got += _ids(await stream.receive_batch())
    assert got == list(range(20))  # lossless under "block"
    assert stream.statistics().dropped == 0


@pytest.mark.parametrize("transport", ["websockets", "auto"])
async def test_batches_from_a_real_feed_lose_nothing(anyio_backend: str, transport: Any) -> None:
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, transport=transport, backoff_base=0.01, backoff_cap=0.05)
        async with mux:
            stream = mux.stream_filter(maxsize=10_000)
            srv.start_feed(rate=20_000, min_clients=1)
            seqs: list[int] = []
            with anyio.fail_after(10):
                async for batch in stream.batches(limit=500):
                    assert 1 <= len(batch) <= 500
                    seqs += [m["seq"] for m in batch]
                    if len(seqs) >= 2000:
                        break
            used = mux.stats().transport
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none missing
    if anyio_backend == "trio":
        assert used == "websockets"  # what transport="auto" chose: both are covered
