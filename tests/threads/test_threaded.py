"""run_in_thread: a multiplexer on its own loop, used from other threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from wsmux import ConnectionGap, FatalConnectError, Multiplexer, NotConnected, StreamLagged
from wsmux.testing import FeedServer
from wsmux.threads._mux_thread import MuxThread, ThreadStream, run_in_thread

FAST: dict[str, Any] = {
    "backoff_base": 0.02,
    "backoff_cap": 0.1,
    "open_timeout": 2.0,
    "close_timeout": 0.5,
}


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(symbols=4) as srv:
        yield srv


def take(stream: ThreadStream, n: int) -> list[Any]:
    out = []
    for msg in stream:
        out.append(msg)
        if len(out) == n:
            break
    return out


def test_blocking_iteration_in_order(server: FeedServer) -> None:
    with run_in_thread(Multiplexer(server.url, **FAST)) as t:
        assert t.running and t.state == "open"
        assert t.name.startswith("wsmux")
        everything = t.stream_filter(timeout=5)
        sym1 = t.stream_filter({"s": "SYM1"}, timeout=5)
        server.start_feed(count=500)
        got = take(everything, 500)
        assert [m["seq"] for m in got] == list(range(1, 501))
        assert all(m["s"] == "SYM1" for m in take(sym1, 20))
        stats = everything.statistics()
        assert stats.delivered == 500 and stats.dropped == 0
    assert not t.running
    assert t.stats().state == "closed"
    assert list(everything) == []  # iteration ends once stopped


def test_receive_timeout_and_nowait(server: FeedServer) -> None:
    with run_in_thread(Multiplexer(server.url, **FAST)) as t:
        stream = t.stream_filter()
        with pytest.raises(anyio.WouldBlock):
            stream.receive_nowait()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            stream.receive(timeout=0.05)
        assert time.monotonic() - started < 1
        server.send({"e": "hello"})
        assert stream.receive(timeout=5) == {"e": "hello"}
        stream.close()
        assert stream.closed
        assert list(stream) == []


def test_stop_from_main_ends_blocked_reader_thread(server: FeedServer) -> None:
    t = run_in_thread(Multiplexer(server.url, **FAST))
    stream = t.stream_filter()
    ended = threading.Event()

    def reader() -> None:
        for _ in stream:
            pass
        ended.set()

    thread = threading.Thread(target=reader, name="wsmux-test-reader")
    thread.start()
    time.sleep(0.02)  # let the reader block in the loop's receive
    t.stop()
    thread.join(5)
    assert ended.is_set()
    t.stop()  # idempotent


def test_handlers_run_in_their_own_threads(server: FeedServer) -> None:
    seen: list[int] = []
    slow_seen: list[int] = []
    inline_seen: list[int] = []
    async_seen: list[int] = []
    threads: dict[str, set[threading.Thread]] = {
        "fast": set(),
        "slow": set(),
        "broken": set(),
        "inline": set(),
        "coro": set(),
    }
    release = threading.Event()

    def fast(msg: dict[str, Any]) -> None:
        threads["fast"].add(threading.current_thread())
        seen.append(msg["seq"])

    def slow(msg: dict[str, Any]) -> None:
        threads["slow"].add(threading.current_thread())
        # Blocked until the others have had everything; if it runs where it
        # blocks them, it gives up once so that the test fails, not hangs.
        if not release.wait(3):
            release.set()
        slow_seen.append(msg["seq"])

    def broken(msg: dict[str, Any]) -> None:
        threads["broken"].add(threading.current_thread())
        raise ValueError("boom")

    def inline(msg: dict[str, Any]) -> None:
        threads["inline"].add(threading.current_thread())
        inline_seen.append(msg["seq"])

    async def coro(msg: dict[str, Any]) -> None:
        threads["coro"].add(threading.current_thread())
        async_seen.append(msg["seq"])

    def wait(what: str, done: Any) -> None:
        deadline = time.monotonic() + 5
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    with run_in_thread(Multiplexer(server.url, **FAST)) as t:
        try:
            t.add_handler(fast)
            t.add_handler(slow, maxsize=10_000)
            t.add_handler(broken, {"seq": 1})
            t.on(inline=True)(inline)
            t.add_handler(coro)
            with pytest.raises(ValueError, match="already"):
                t.add_handler(fast)
            stream = t.stream_filter(timeout=5)
            server.start_feed(count=300)
            # While the slow handler sits in its first call, everyone else gets all.
            assert [m["seq"] for m in take(stream, 300)] == list(range(1, 301))
            wait("the other handlers", lambda: len(seen) == len(async_seen) == 300)
            wait("the broken handler", lambda: t.stats().handler_errors == 1)
            assert slow_seen == [] and len(threads["slow"]) == 1
        finally:
            release.set()
        wait("the slow handler", lambda: len(slow_seen) == 300)
        t.remove_handler(fast)
        with pytest.raises(KeyError):
            t.remove_handler(fast)
    assert seen == slow_seen == inline_seen == async_seen == list(range(1, 301))
    # One thread per plain handler, each its own; inline and async ones on the loop.
    assert all(len(used) == 1 for used in threads.values()), threads
    own = {name: next(iter(threads[name])) for name in threads}
    assert own["inline"] is own["coro"]
    assert own["inline"].name == t.name
    plain = [own["fast"], own["slow"], own["broken"]]
    assert len(set(plain)) == 3, "plain handlers share a thread"
    assert not {*plain} & {own["inline"], threading.main_thread()}
    assert all(th.name.startswith("wsmux-handler") for th in plain)


def test_send_from_many_threads_and_subscribe_while_running(server: FeedServer) -> None:
    with run_in_thread(Multiplexer(server.url, **FAST)) as t:

        def sender(k: int) -> None:
            for i in range(20):
                t.send({"from": k, "i": i})

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        got = server.wait_for_messages(80)
        assert sorted((m["from"], m["i"]) for m in got) == [
            (k, i) for k in range(4) for i in range(20)
        ]
        t.subscribe("sym1@trade", "sym2@trade")
        assert t.topics == ["sym1@trade", "sym2@trade"]
        t.unsubscribe("sym1@trade")
        server.wait_until(lambda: server.records()[0].subscriptions == {"sym2@trade"})
        assert t.request({"method": "LIST_SUBSCRIPTIONS"})["result"] == ["sym2@trade"]


def test_fatal_handshake_raises_in_caller(server: FeedServer) -> None:
    server.refuse(None, status=401)
    with pytest.raises(FatalConnectError, match="401"):
        run_in_thread(Multiplexer(server.url, **FAST))


def test_connect_timeout_stops_the_thread(server: FeedServer) -> None:
    server.refuse(None, status=503)
    with pytest.raises(NotConnected):
        run_in_thread(Multiplexer(server.url, **FAST), timeout=0.2)


def test_death_after_start_reaches_readers_and_stop(server: FeedServer) -> None:
    t = run_in_thread(Multiplexer(server.url, max_attempts=1, **FAST))
    stream = t.stream_filter(timeout=5)
    server.refuse(None, status=403)
    server.drop()
    with pytest.raises(FatalConnectError):
        stream.receive()
    with pytest.raises(FatalConnectError):
        t.join(5)
    t.stop()  # the error is raised once


def test_leaving_the_block_raises_the_multiplexers_error(server: FeedServer) -> None:
    mux = Multiplexer(server.url, **FAST)
    with pytest.raises(FatalConnectError, match="401"), run_in_thread(mux) as t:
        stream = t.stream_filter(timeout=5)
        server.refuse(None, status=401)
        server.drop()
        with pytest.raises(FatalConnectError):
            stream.receive()  # the multiplexer has died; the block itself ends normally
    assert not t.running and t.stats().state == "failed"


def test_gaps_and_lag_are_reported(server: FeedServer) -> None:
    with run_in_thread(Multiplexer(server.url, **FAST)) as t:
        gaps = t.stream_filter(gaps="raise", timeout=5)
        small = t.stream_filter(maxsize=4, timeout=5)
        server.start_feed(count=50)
        take(gaps, 50)  # all 50 are in: the small stream overflowed meanwhile
        with pytest.raises(StreamLagged):
            small.receive()
        server.drop()
        with pytest.raises(ConnectionGap):
            gaps.receive()


def test_blocked_main_thread_delays_nothing(server: FeedServer) -> None:
    """The main thread blocks (sleep, then a busy loop) longer than the ping timeout."""
    # Pings every 0.1 s, 0.3 s to answer; the main thread blocks for 0.8 s in
    # all. (Tighter timeouts make this test flaky on a loaded 2-core machine,
    # where three threads share one GIL.)
    mux = Multiplexer(server.url, ping_interval=0.1, ping_timeout=0.3, **FAST)
    with run_in_thread(mux) as t:
        stream = t.stream_filter(maxsize=100_000, gaps="raise", timeout=5)
        server.start_feed(rate=2000)
        time.sleep(0.4)
        end = time.monotonic() + 0.4
        while time.monotonic() < end:
            sum(range(1000))
        server.stop_feed()
        stats = t.stats()
        assert stats.disconnects == 0 and stats.reconnects == 0
        assert stats.messages > 300  # read all along, not after the main thread woke
        seqs = [m["seq"] for m in take(stream, stats.messages)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_trio_backend_thread(server: FeedServer) -> None:
    with run_in_thread(Multiplexer(server.url, **FAST), backend="trio") as t:
        stream = t.stream_filter(timeout=5)
        server.start_feed(count=50)
        assert [m["seq"] for m in take(stream, 50)] == list(range(1, 51))


def test_blocking_call_from_own_thread_is_refused(server: FeedServer) -> None:
    errors: list[BaseException] = []
    holder: list[MuxThread] = []

    def inline(msg: Any) -> None:
        try:
            holder[0].send({"x": 1})
        except RuntimeError as exc:
            errors.append(exc)
        holder[0].stop()  # starts the shutdown, does not wait for itself

    t = run_in_thread(Multiplexer(server.url, **FAST))
    holder.append(t)
    t.add_handler(inline, inline=True)
    server.send({"go": 1})
    t.join(5)
    assert errors and "own thread" in str(errors[0])


def test_stop_from_handler_thread(server: FeedServer) -> None:
    holder: list[MuxThread] = []
    t = run_in_thread(Multiplexer(server.url, **FAST))
    holder.append(t)
    t.add_handler(lambda msg: holder[0].stop())
    server.send({"go": 1})
    t.join(5)
    assert not t.running


def test_stop_right_after_start_without_waiting(server: FeedServer) -> None:
    t = run_in_thread(Multiplexer(server.url, **FAST), wait=False)
    t.stop(5)
    assert not t.running
    with pytest.raises(RuntimeError, match="already started"):
        run_in_thread(t.mux)


@pytest.mark.anyio
async def test_async_for_does_not_block_the_calling_loop() -> None:
    async with FeedServer(symbols=2) as server:
        t = run_in_thread(Multiplexer(server.url, **FAST))
        try:
            stream = t.stream_filter()
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.sleep(0.005)

            got: list[int] = []
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ticker)
                    with anyio.move_on_after(0.05):  # a cancelled read loses nothing
                        await stream.areceive()
                    server.start_feed(count=100, rate=1000)
                    async for msg in stream:
                        got.append(msg["seq"])
                        if len(got) == 100:
                            break
                    tg.cancel_scope.cancel()
            assert got == list(range(1, 101))
            assert ticks > 5
            with pytest.raises(TimeoutError):
                await stream.areceive(timeout=0.01)
        finally:
            await anyio.to_thread.run_sync(t.stop)
        assert [m async for m in stream] == []


def test_thread_stream_batches_keep_order_gaps_and_the_end(server: FeedServer) -> None:
    with run_in_thread(Multiplexer(server.url, **FAST)) as t:
        stream = t.stream_filter(gaps="raise", timeout=5)
        with pytest.raises(TimeoutError):
            stream.receive_batch(timeout=0.05)
        with pytest.raises(ValueError):
            stream.receive_batch(0)
        server.start_feed(count=300)
        seqs: list[int] = []
        for batch in stream.batches(limit=64):
            assert 1 <= len(batch) <= 64
            seqs += [m["seq"] for m in batch]
            if len(seqs) == 300:
                break
        assert seqs == list(range(1, 301))
        server.drop()
        with pytest.raises(ConnectionGap):  # never inside a batch
            stream.receive_batch()
    assert list(stream.batches()) == []  # the end, once stopped
