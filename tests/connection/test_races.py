"""Regressions from review: lifecycle races, rotation edge cases, topic bookkeeping."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from wsmux import ConnectionGap, Multiplexer, RetriesExhausted
from wsmux.connection._fence import fence_of
from wsmux.connection._transport import default_connect
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}


class Rotating(Multiplexer):
    """Rotates each time the test sets ``rotate``."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.rotate = anyio.Event()

    async def _when2create_new_ws(self) -> None:
        await self.rotate.wait()
        self.rotate = anyio.Event()


async def until(predicate: Any, seconds: float = 15.0) -> None:
    """Poll a predicate; a connection list that is briefly empty counts as False."""

    def holds() -> bool:
        try:
            return bool(predicate())
        except IndexError:
            return False

    with anyio.fail_after(seconds):
        while not holds():
            await anyio.sleep(0.005)


async def test_run_returns_when_the_multiplexer_dies_after_opening() -> None:
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, max_attempts=1, **FAST)
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(mux.wait_connected)
                failed: list[BaseException] = []

                async def run() -> None:
                    try:
                        await mux.run()
                    except RetriesExhausted as exc:
                        failed.append(exc)

                tg.start_soon(run)
                await until(lambda: mux.state == "open")
                srv.refuse(None, status=503)
                srv.drop()
        assert mux.state == "failed" and failed


async def test_exit_from_a_disconnect_callback_ends_the_streams() -> None:
    async def on_disconnect(mux: Multiplexer) -> None:
        await mux.exit()

    with FeedServer() as srv:
        mux = Multiplexer(srv.url, disconnect_fn=on_disconnect, **FAST)
        stream = mux.stream_filter()
        with anyio.fail_after(3):
            async with mux:
                srv.drop()
                assert [m async for m in stream] == []
        assert mux.state == "closed"


async def test_exit_right_after_starting_run_stops_it() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: run() would retry for ever
    mux = Multiplexer(f"ws://127.0.0.1:{port}", **FAST)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(mux.run)
            await anyio.lowlevel.checkpoint()
            await mux.exit()
    assert mux.state == "closed"


async def test_a_topic_subscribed_during_a_rotation_reaches_the_new_connection() -> None:
    with FeedServer(require_subscribe=True) as srv:
        mux = Rotating(srv.url, rotation_drain=1.0, **FAST)
        async with mux:
            await mux.subscribe("sym0@trade")
            srv.start_feed(rate=500)
            await srv.wait_for_connections_async(1)
            old = srv.open_connections()[0].id
            srv.half_open(conn=old)  # its fence goes unanswered: the rotation waits
            mux.rotate.set()
            await until(lambda: len(srv.open_connections()) == 2)
            await until(lambda: srv.open_connections()[-1].subscriptions == {"sym0@trade"})
            await mux.subscribe("sym1@trade")
            srv.resume(conn=old)
            await until(lambda: mux.stats().rotations == 1)
            await until(lambda: srv.open_connections()[-1].subscriptions >= {"sym1@trade"})
            srv.stop_feed()
        last = srv.records()[-1]
        assert last.subscriptions == {"sym0@trade", "sym1@trade"}


class _HeldFence:
    """A websockets connection whose fence (the rotation's ping) waits for the test."""

    def __init__(self, conn: Any, gate: anyio.Event) -> None:
        self.conn = conn
        self.gate = gate
        self.real = fence_of(conn)

    async def recv(self) -> Any:
        return await self.conn.recv()

    async def send(self, message: Any) -> None:
        await self.conn.send(message)

    async def close(self) -> None:
        await self.conn.close()

    async def fence(self) -> int:
        await self.gate.wait()
        assert self.real is not None
        return await self.real()


class _HeldContext:
    def __init__(self, made: Any, gate: anyio.Event) -> None:
        self.made = made
        self.gate = gate

    async def __aenter__(self) -> _HeldFence:
        return _HeldFence(await self.made.__aenter__(), self.gate)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.made.__aexit__(*exc)


async def test_the_old_connection_is_kept_when_the_new_one_dies_mid_rotation() -> None:
    """The old connection's fence is held, so the rotation is still waiting
    when the test drops the new connection."""
    gate = anyio.Event()

    class Held(Rotating):
        async def _create_ws(self) -> Any:
            assert self.url is not None
            made = default_connect(self.url, {})
            if hasattr(made, "__await__"):  # asyncio
                return _HeldFence(await made, gate)
            return _HeldContext(made, gate)  # trio: a context manager

    with FeedServer() as srv:
        mux = Held(srv.url, rotation_drain=10.0, **FAST)
        stream = mux.stream_filter(gaps="raise", maxsize=100_000)
        srv.start_feed(rate=500)
        async with mux:
            mux.rotate.set()
            await until(lambda: len(srv.open_connections()) == 2)
            await until(lambda: mux.state == "rotating")
            srv.drop(conn=srv.open_connections()[-1].id)
            # The retry opens a third connection once the loss was seen.
            await until(lambda: len(srv.records()) == 3)
            gate.set()
            await until(lambda: mux.stats().rotations == 1, seconds=10)  # retried, then done
            stats = mux.stats()
            assert stats.disconnects == 0 and stats.reconnects == 0
            assert stats.connects == 3
            while True:  # no ConnectionGap anywhere: the rotation stayed planned
                try:
                    stream.receive_nowait()
                except anyio.WouldBlock:
                    break
            srv.stop_feed()


async def test_topic_changes_converge_whatever_the_task_order() -> None:
    with FeedServer(require_subscribe=True) as srv:
        async with Multiplexer(srv.url, **FAST) as mux:
            await srv.wait_for_connections_async(1)  # the server's side too
            for _ in range(10):
                first = mux.stream_filter(topics=["sym1@trade"])
                await first.close()
                second = mux.stream_filter(topics=["sym1@trade"])
                await until(lambda: srv.open_connections()[-1].subscriptions == {"sym1@trade"})
                await anyio.sleep(0.02)  # let any late message land
                assert srv.open_connections()[-1].subscriptions == {"sym1@trade"}
                await second.close()
                await until(lambda: srv.open_connections()[-1].subscriptions == set())


async def test_unsubscribe_keeps_topics_that_streams_still_need() -> None:
    with FeedServer(require_subscribe=True) as srv:
        async with Multiplexer(srv.url, **FAST) as mux:
            await srv.wait_for_connections_async(1)  # the server's side too
            stream = mux.stream_filter(topics=["x@trade"])
            await mux.subscribe("x@trade", "y@trade")
            await mux.unsubscribe("x@trade", "y@trade")
            assert mux.topics == ["x@trade"]
            await until(lambda: srv.open_connections()[-1].subscriptions == {"x@trade"})
            await mux.subscribe("x@trade")
            await stream.close()  # the explicit subscription remains
            await anyio.sleep(0.05)
            assert mux.topics == ["x@trade"]
            assert srv.open_connections()[-1].subscriptions == {"x@trade"}


async def test_a_value_error_in_on_connect_is_retried_not_fatal() -> None:
    class Auth(Multiplexer):
        calls = 0

        async def _on_connect(self, ws: Any) -> None:
            Auth.calls += 1
            if Auth.calls == 1:
                orjson.loads(b"{garbled auth reply")  # JSONDecodeError is a ValueError

    with FeedServer() as srv, anyio.fail_after(3):
        async with Auth(srv.url, **FAST) as mux:
            assert mux.stats().connect_errors == 1
    assert Auth.calls == 2


async def test_a_rotation_that_cannot_drain_says_so() -> None:
    """A consumer that holds the old connection back: no silent loss.

    The consumer stops reading a full block stream, so the old link's reader
    makes no progress towards its fence for rotation_drain: the cutover is
    forced, counted, and announced. (A consumer that is merely slow is
    waited for: see test_issue10's starved-CPU test.)
    """
    with FeedServer() as srv:
        mux = Rotating(srv.url, rotation_drain=0.1, **FAST)
        segments: list[list[int]] = [[]]
        resume = anyio.Event()
        async with mux:
            stream = mux.stream_filter(overflow="block", maxsize=16, gaps="raise")
            srv.start_feed(rate=3000, count=1500, min_clients=1)

            async def consume() -> None:
                while True:
                    try:
                        msg = await stream.receive()
                    except ConnectionGap:
                        segments.append([])
                        continue
                    except anyio.EndOfStream:
                        return
                    if "seq" in msg:
                        segments[-1].append(msg["seq"])
                    if len(segments[0]) >= 50:
                        await resume.wait()  # stalled: the block stream fills

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await until(lambda: len(segments[0]) >= 50)  # the reader is held back
                mux.rotate.set()
                await until(lambda: mux.stats().rotation_gaps == 1, 5)
                resume.set()  # past the cutover: catch up
                await until(lambda: mux.stats().rotations == 1, 5)
                await srv.wait_feed_done_async()
                await until(lambda: bool(segments[-1]) and segments[-1][-1] == 1500, 10)
                tg.cancel_scope.cancel()
            stats = mux.stats()
    # The forced cutover is counted once, and the stream hears of it once, there.
    assert stats.rotation_gaps == 1
    assert (stats.rotations, stats.disconnects, stats.reconnects) == (1, 0, 0)
    assert len(segments) == 2, f"{len(segments) - 1} ConnectionGap(s), expected 1"
    before, after = segments
    # Each side of the gap is whole: whatever is missing went at the gap.
    assert before == list(range(1, before[-1] + 1))
    assert after == list(range(after[0], 1501))
    missing = set(range(1, 1501)) - set(before) - set(after)
    assert missing == set(range(before[-1] + 1, after[0]))
