"""Regressions of issue 10: rotation triggers, duplicates, exactly-once, exit, send.

Every test uses public names only, so that the file also runs against the
code before the rotation redesign (848e4a7). Options that code does not know
(``rotation_interval``) are passed through :func:`opts`, which leaves them out
there; the fence helpers are imported when they exist.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import threading
from collections import Counter
from typing import Any

import anyio
import pytest

from wsmux import (
    ConnectionGap,
    FatalConnectError,
    Multiplexer,
    MultiplexerClosed,
    NotConnected,
)
from wsmux.testing import FeedServer

try:
    from wsmux.connection._fence import fence_of as _fence_of
except ImportError:  # 848e4a7 has no fence
    _fence_of = None


def _arrived(ws: Any) -> int | None:
    """Data messages that arrived on a websockets connection (read or not)."""
    counter = getattr(ws, "_wsmux_counter", None)  # installed by the fence
    return None if counter is None else int(counter.messages)


FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}
_ACCEPTED = set(inspect.signature(Multiplexer.__init__).parameters)


def opts(**options: Any) -> dict[str, Any]:
    """The options this version of Multiplexer accepts (848e4a7 lacks some)."""
    return {k: v for k, v in options.items() if k in _ACCEPTED}


async def until(predicate: Any, seconds: float = 15.0) -> None:
    """Poll a predicate under a deadline."""
    with anyio.fail_after(seconds):
        while not predicate():
            await anyio.sleep(0.005)


def drain(stream: Any) -> tuple[list[Any], int]:
    """Everything buffered in a stream now, and how many ConnectionGap it raised."""
    got: list[Any] = []
    gaps = 0
    while True:
        try:
            got.append(stream.receive_nowait())
        except ConnectionGap:
            gaps += 1
        except anyio.WouldBlock:
            return got, gaps


class Rotating(Multiplexer):
    """Rotates each time the test sets ``rotate``."""

    def __init__(self, url: str | None, **options: Any) -> None:
        super().__init__(url, **options)
        self.rotate = anyio.Event()

    async def _when2create_new_ws(self) -> None:
        await self.rotate.wait()
        self.rotate = anyio.Event()


async def rotate_once(mux: Rotating, seconds: float = 3.0) -> None:
    """Ask for one rotation and wait until it is done."""
    before = mux.stats().rotations
    mux.rotate.set()
    await until(lambda: mux.stats().rotations > before, seconds)


# -- item 1: an in-band trigger that arrives during a rotation ---------------------


async def _expire_on_connect(server: FeedServer, key: str, ws: Any) -> None:
    """Expire ``key`` and wait until the expiry has reached ``ws`` (unread): it
    is then among the first messages of the connection, before the rotation
    that opened it reaches its fence."""
    server.expire_listen_key(key)
    if _arrived(ws) is None:  # 848e4a7: nothing to count with
        await anyio.sleep(0.02)
        return
    before = _arrived(ws)
    await until(lambda: _arrived(ws) > before)  # type: ignore[operator]


class UserData(Multiplexer):
    """The seed 004 user-data adapter: a fresh listen key per connection that
    expires right after the connect, rotate when it has expired. Without
    ``_message_id`` unless ``ids``."""

    ids = False

    def __init__(self, server: FeedServer, **options: Any) -> None:
        super().__init__(None, **options)
        self.server = server
        self.keys: list[str] = []

    async def _create_ws(self) -> Any:
        key = self.server.create_listen_key()
        self.keys.append(key)
        self.url = f"{self.server.url}/ws/{key}"
        return await super()._create_ws()

    async def _on_connect(self, ws: Any) -> None:
        await _expire_on_connect(self.server, self.keys[-1], ws)

    async def _when2create_new_ws(self) -> None:
        # The stream is open before the first await, as in seed 004.
        async with self.stream_filter([{"e": "listenKeyExpired"}]) as expired:
            await expired.receive()


class UserDataWithIds(UserData):
    def _message_id(self, msg: Any) -> Any:
        return msg.get("n")


async def feed_users(server: FeedServer) -> None:
    """Account events every 2 ms on every connection."""
    n = 0
    while True:
        n += 1
        server.broadcast({"e": "ORDER", "n": n})
        await anyio.sleep(0.002)


async def _keeps_rotating(mux: Any, server: FeedServer) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed_users, server)
        await until(lambda: mux.stats().rotations >= 5, 3)
        tg.cancel_scope.cancel()
    stats = mux.stats()
    assert stats.disconnects == 0 and stats.reconnects == 0


@pytest.mark.anyio
async def test_listen_key_expiring_during_each_rotation_keeps_rotating() -> None:
    """Item 1: each listen key expires right after its connect, so the expiry
    reaches a rotation's new connection during the rotation; with no
    ``_message_id`` it must still trigger the next rotation: five rotations
    follow, not one.

    Fails on 848e4a7: TimeoutError waiting for 5 rotations (the count stays
    at 1: the expiry published at the cutover is missed by a trigger armed later).
    """
    with FeedServer() as srv:
        mux = UserData(srv, **opts(rotation_interval=0.02, **FAST))
        async with mux:
            await _keeps_rotating(mux, srv)


@pytest.mark.anyio
async def test_listen_key_expiring_during_each_rotation_keeps_rotating_with_ids() -> None:
    """Item 1 with a ``_message_id`` (the expiry itself has none): five rotations.

    Fails on 848e4a7: TimeoutError waiting for 5 rotations (the expiry published at
    the cutover is missed by a trigger armed later).
    """
    with FeedServer() as srv:
        mux = UserDataWithIds(srv, **opts(rotation_interval=0.02, **FAST))
        async with mux:
            await _keeps_rotating(mux, srv)


def test_listen_key_expiring_during_each_rotation_through_compat() -> None:
    """Item 1 through ``wsmux.compat.AsyncWebsocketStreamInterface`` (asyncio),
    with seed 004's own ``_when2create_new_ws``, no ``_message_id``.

    Fails on 848e4a7: TimeoutError waiting for 5 rotations.
    """
    from wsmux.compat import AsyncWebsocketStreamInterface

    class Seed004(AsyncWebsocketStreamInterface):
        def __init__(self, server: FeedServer) -> None:
            self.server = server
            self.keys: list[str] = []
            super().__init__(**opts(rotation_interval=0.02, **FAST))

        async def _create_ws(self) -> Any:
            key = self.server.create_listen_key()
            self.keys.append(key)
            self.url = f"{self.server.url}/ws/{key}"
            return await super()._create_ws()

        async def _on_connect(self, ws: Any) -> None:
            await _expire_on_connect(self.server, self.keys[-1], ws)

        async def _when2create_new_ws(self) -> None:
            expired = self.stream_filter([{"e": "listenKeyExpired"}])

            async def read(stream: Any) -> None:
                async for _news in stream:
                    try:
                        return
                    finally:
                        asyncio.create_task(stream.close())  # noqa: RUF006 - as in seed 004

            task = asyncio.create_task(read(expired))
            sleep = asyncio.create_task(asyncio.sleep(20 * 3600))
            await asyncio.wait([task, sleep], return_when="FIRST_COMPLETED")
            task.cancel()
            sleep.cancel()

    async def main() -> None:
        with FeedServer() as srv:
            ws = Seed004(srv)
            try:
                await asyncio.wait_for(ws.wait_enter_handing_ws(), 3)
                await _keeps_rotating(ws, srv)
            finally:
                await ws.exit()

    asyncio.run(main())


# -- item 2: no ids: a rotation repeats about one round trip -----------------------


@pytest.mark.anyio
async def test_rotation_without_ids_repeats_little_and_never_gaps() -> None:
    """Item 2: without ``_message_id``, at 500 msg/s, each rotation repeats at
    most 50 sequence numbers, none is missing, and no ConnectionGap is raised.

    Fails on 848e4a7: about 220-250 repeated seqs per rotation (the old
    connection is drained for ``rotation_drain`` while the new one holds).
    """
    rotations = 3
    with FeedServer() as srv:
        mux = Rotating(srv.url, **opts(rotation_interval=0.02, **FAST))
        stream = mux.stream_filter([{"e": "trade"}, {"e": "depthUpdate"}], maxsize=100_000)
        gapped = mux.stream_filter(gaps="raise", maxsize=100_000)
        async with mux:
            srv.start_feed(rate=500)
            for _ in range(rotations):
                await anyio.sleep(0.1)  # some traffic on each connection
                await rotate_once(mux)
            await anyio.sleep(0.05)
            srv.stop_feed()
            last = await srv.wait_feed_done_async()
            seqs: list[int] = []
            with anyio.fail_after(3):
                while last not in seqs:
                    seqs.append((await stream.receive())["seq"])
            _, gaps = drain(gapped)
        repeated = sum(n - 1 for n in Counter(seqs).values())
        assert mux.stats().rotations == rotations
        assert gaps == 0 and mux.stats().disconnects == 0
        assert set(range(seqs[0], last + 1)) <= set(seqs), "a message is missing"
        assert repeated <= 50 * rotations, f"{repeated} repeated seqs over {rotations} rotations"


@pytest.mark.anyio
@pytest.mark.parametrize("ids", [False, True], ids=["no_ids", "ids"])
async def test_planned_rotations_never_gap_on_a_starved_cpu(ids: bool) -> None:
    """Item 2 on a starved CPU: a thread hogs the GIL (pure-Python loop) while
    five rotations run at 1,000 msg/s. No ConnectionGap, nothing missing, no
    rotation counted as a gap: the fence does not depend on the scheduler.

    Fails on 848e4a7 (no_ids): a planned rotation raised ConnectionGap when
    its drain timed out under load (the flake the issue reports).
    """
    stop = threading.Event()

    def hog() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    class RotatingIds(Rotating):
        def _message_id(self, msg: Any) -> Any:
            return msg.get("seq") if "seq" in msg else None

    cls = RotatingIds if ids else Rotating
    hogger = threading.Thread(target=hog, name="gil-hog", daemon=True)
    # The server shares the starved CPU: a large queue, so that it drops nothing.
    with FeedServer(queue_size=100_000) as srv:
        mux = cls(srv.url, **opts(rotation_interval=0.02, rotation_drain=0.5, **FAST))
        stream = mux.stream_filter([{"e": "trade"}, {"e": "depthUpdate"}], maxsize=100_000)
        gapped = mux.stream_filter(gaps="raise", maxsize=100_000)
        hogger.start()
        try:
            async with mux:
                srv.start_feed(rate=1000)
                for _ in range(5):
                    await anyio.sleep(0.05)
                    await rotate_once(mux, seconds=10)
                srv.stop_feed()
                last = await srv.wait_feed_done_async()
                seqs: list[int] = []
                with anyio.move_on_after(10):
                    while not set(range(1, last + 1)) <= set(seqs):
                        seqs.append((await stream.receive())["seq"])
                _, gaps = drain(gapped)
                stats = mux.stats()
        finally:
            stop.set()
            hogger.join()
    missing = sorted(set(range(1, last + 1)) - set(seqs))
    assert not missing, f"{len(missing)} missing: {missing[:3]}..{missing[-3:]}; order {seqs[-60:]}"
    assert srv.stats().dropped == 0, "the test server dropped frames: the check means nothing"
    assert gaps == 0 and stats.rotation_gaps == 0 and stats.disconnects == 0
    assert set(range(seqs[0], last + 1)) <= set(seqs), "a message is missing"
    if ids:
        assert len(seqs) == len(set(seqs)), "an id was delivered twice"


# -- item 3: exactly-once with ids, connections interleaving topics differently ------


class Shuffled:
    """A connection that returns its messages in windows of ``size``, each window
    shuffled with every topic's own order kept (so two connections interleave
    topics differently). Its fence is the inner fence rounded up to a window:
    the first ``fence`` messages it returns are then exactly the first
    ``fence`` that arrived, a superset of what the server sent before the ping.
    """

    def __init__(self, conn: Any, seed: int, size: int = 8) -> None:
        self.conn = conn
        self.size = size
        self.rng = random.Random(seed)
        self.ready: list[Any] = []
        self.real = _fence_of(conn) if _fence_of is not None else None

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        if not self.ready:
            window = [await self.conn.recv() for _ in range(self.size)]
            self.ready = _interleave(window, self.rng)
        return self.ready.pop(0)

    async def send(self, message: Any) -> None:
        await self.conn.send(message)

    async def close(self) -> None:
        await self.conn.close()

    async def fence(self) -> int:
        assert self.real is not None
        count = await self.real()
        return math.ceil(count / self.size) * self.size


def _topic(raw: Any) -> str:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if '"s":"' not in text:
        return text
    return text.split('"s":"', 1)[1].split('"', 1)[0] + text.split('"e":"', 1)[1].split('"', 1)[0]


def _interleave(window: list[Any], rng: random.Random) -> list[Any]:
    """A random merge of the window's per-topic sequences."""
    queues: dict[str, list[Any]] = {}
    for raw in window:
        queues.setdefault(_topic(raw), []).append(raw)
    out: list[Any] = []
    while queues:
        topic = rng.choice(sorted(queues))
        out.append(queues[topic].pop(0))
        if not queues[topic]:
            del queues[topic]
    return out


class _ShuffledContext:
    def __init__(self, made: Any, seed: int) -> None:
        self.made = made
        self.seed = seed

    async def __aenter__(self) -> Shuffled:
        return Shuffled(await self.made.__aenter__(), self.seed)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.made.__aexit__(*exc)


class ShuffledIds(Rotating):
    connections = 0

    async def _create_ws(self) -> Any:
        made = await super()._create_ws()
        self.connections += 1
        if hasattr(made, "recv"):
            return Shuffled(made, self.connections)
        return _ShuffledContext(made, self.connections)  # trio: a context manager

    def _message_id(self, msg: Any) -> Any:
        if "seq" not in msg:
            return None
        return (msg["s"] + msg["e"], msg["seq"])


@pytest.mark.anyio
async def test_exactly_once_when_connections_interleave_topics_differently() -> None:
    """Item 3: with ``_message_id = (topic, n)``, over four rotations between
    connections that interleave topics differently, every id arrives exactly
    once and every topic keeps its order.

    Fails on 848e4a7: ids ('SYM1depthUpdate', 119) and (..., 120) delivered twice on
    asyncio; passed on trio. An early version of the new design missed up to
    10 ids on trio 4 runs in 10 (the server registered the new connection
    after the old one's fence): the old link now goes on until the new one
    repeats one of its ids.
    """
    with FeedServer(symbols=4) as srv:
        mux = ShuffledIds(srv.url, **opts(rotation_interval=0.02, **FAST))
        stream = mux.stream_filter(maxsize=100_000, gaps="raise")
        async with mux:
            srv.start_feed(rate=2000)
            for _ in range(4):
                await anyio.sleep(0.05)
                await rotate_once(mux)
            await anyio.sleep(0.05)
            srv.stop_feed()
            last = await srv.wait_feed_done_async()
            for i in range(16):  # completes the last windows of the feed
                srv.broadcast({"flush": i})
            got: list[Any] = []
            with anyio.fail_after(3):
                # A window holds at most 7 flushes: the 8th to arrive comes
                # after every window that holds feed messages.
                while sum("flush" in m for m in got) < 8:
                    got.append(await stream.receive())
        ids = [(m["s"] + m["e"], m["seq"]) for m in got if "seq" in m]
        counts = Counter(ids)
        twice = sorted(i for i, n in counts.items() if n > 1)
        missing = sorted(set(range(1, last + 1)) - {seq for _, seq in ids})
        assert not twice, f"{len(twice)} ids delivered more than once: {twice[:5]}"
        assert not missing, f"{len(missing)} seqs missing: {missing[:5]}"
        by_topic: dict[str, list[int]] = {}
        for topic, seq in ids:
            by_topic.setdefault(topic, []).append(seq)
        for topic, seqs in by_topic.items():
            assert seqs == sorted(seqs), f"{topic} out of order"
        assert mux.stats().rotations == 4


# -- item 4: exit() inside `async with` while an async handler outlives drain_timeout --


@pytest.mark.anyio
async def test_exit_inside_async_with_while_a_handler_sleeps(
    anyio_backend: str, request: pytest.FixtureRequest
) -> None:
    """Item 4: ``await mux.exit()`` inside ``async with`` while an async handler
    sleeps past ``drain_timeout``: no cancellation escapes, the body goes on.

    Fails on 848e4a7: trio.Cancelled escapes ``exit()`` on trio; passes on asyncio.
    """
    started = anyio.Event()

    async def slow(msg: Any) -> None:
        started.set()
        await anyio.sleep(10)

    after_exit = False
    with FeedServer() as srv, anyio.fail_after(3):
        mux = Multiplexer(srv.url, drain_timeout=0.1, **FAST)
        mux.add_handler(slow)
        async with mux:
            srv.broadcast({"n": 1})
            await started.wait()
            await mux.exit()
            after_exit = True
        assert mux.state == "closed"
    assert after_exit


# -- item 5: send() on a connection whose send keeps raising -----------------------


class _FailingSend:
    def __init__(self, conn: Any, attempts: list[float]) -> None:
        self.conn = conn
        self.attempts = attempts

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        return await self.conn.recv(*args, **kwargs)

    async def send(self, message: Any) -> None:
        self.attempts.append(anyio.current_time())
        raise ConnectionResetError("send failed")

    async def close(self) -> None:
        await self.conn.close()


class _FailingContext:
    def __init__(self, made: Any, attempts: list[float]) -> None:
        self.made = made
        self.attempts = attempts

    async def __aenter__(self) -> _FailingSend:
        return _FailingSend(await self.made.__aenter__(), self.attempts)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.made.__aexit__(*exc)


class FailingSend(Multiplexer):
    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.attempts: list[float] = []

    async def _create_ws(self) -> Any:
        made = await super()._create_ws()
        if hasattr(made, "recv"):
            return _FailingSend(made, self.attempts)
        return _FailingContext(made, self.attempts)


@pytest.mark.anyio
async def test_send_on_a_connection_whose_send_keeps_raising() -> None:
    """Item 5: ``send()`` gives up with NotConnected (chained to the transport
    error) within about a second, after a few attempts, and the connection is
    treated as lost.

    Fails on 848e4a7: TimeoutError: send() retried the failing connection for the
    whole 3 s deadline (its ConnectionResetError in the context), never NotConnected.
    """
    with FeedServer() as srv:
        mux = FailingSend(srv.url, send_timeout=0.5, **FAST)
        async with mux:
            start = anyio.current_time()
            with anyio.fail_after(3), pytest.raises(NotConnected) as info:
                await mux.send({"method": "PING"})
            elapsed = anyio.current_time() - start
            cause = info.value.__cause__ or info.value.__context__
            assert isinstance(cause, ConnectionResetError), repr(cause)
            assert elapsed < 1.0, f"send() took {elapsed:.2f}s"
            assert 1 <= len(mux.attempts) <= 5, f"{len(mux.attempts)} attempts"
            await until(lambda: mux.stats().disconnects >= 1 and mux.stats().reconnects >= 1)


# -- item 6: an unhashable _message_id ----------------------------------------------


class UnhashableIds(Rotating):
    def _message_id(self, msg: Any) -> Any:
        return ("seq", {"seq": msg.get("seq")})


@pytest.mark.anyio
async def test_unhashable_message_id_keeps_rotations_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 6: a ``_message_id`` that returns a tuple holding a dict: three
    rotations, no disconnect, no gap, nothing missing, one ERROR line naming
    the type.

    Fails on 848e4a7: TimeoutError waiting for the first rotation to complete.
    """
    caplog.set_level(logging.INFO, logger="wsmux")
    with FeedServer() as srv:
        mux = UnhashableIds(srv.url, **opts(rotation_interval=0.02, **FAST))
        stream = mux.stream_filter([{"e": "trade"}, {"e": "depthUpdate"}], maxsize=100_000)
        gapped = mux.stream_filter(gaps="raise", maxsize=100_000)
        async with mux:
            srv.start_feed(rate=1000)
            for _ in range(3):
                await anyio.sleep(0.05)
                await rotate_once(mux)
            srv.stop_feed()
            last = await srv.wait_feed_done_async()
            seqs: list[int] = []
            with anyio.fail_after(3):
                while last not in seqs:
                    seqs.append((await stream.receive())["seq"])
            _, gaps = drain(gapped)
        stats = mux.stats()
        assert stats.rotations == 3 and stats.disconnects == 0 and gaps == 0
        assert set(range(seqs[0], last + 1)) <= set(seqs), "a message is missing"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "unhashable tuple" in errors[0].getMessage()


# -- item 11: after exit, bad ports, rotation_drain=0 -------------------------------


@pytest.mark.anyio
async def test_every_call_after_exit_raises_multiplexer_closed() -> None:
    """Item 11: after ``exit()``, subscribe, unsubscribe, send, request and
    wait_connected raise MultiplexerClosed.

    Fails on 848e4a7: DID NOT RAISE MultiplexerClosed (subscribe after exit).
    """
    with FeedServer() as srv, anyio.fail_after(3):
        mux = Multiplexer(srv.url, **FAST)
        async with mux:
            pass
        for call in (
            lambda: mux.subscribe("a@trade"),
            lambda: mux.unsubscribe("a@trade"),
            lambda: mux.send({"x": 1}),
            lambda: mux.request({"method": "X"}),
            mux.wait_connected,
        ):
            with pytest.raises(MultiplexerClosed):
                await call()


@pytest.mark.anyio
async def test_a_port_out_of_range_is_fatal_at_once() -> None:
    """Item 11: ``ws://127.0.0.1:99999`` raises FatalConnectError within a second.

    Fails on 848e4a7: TimeoutError: the ValueError (port out of range) is retried
    for ever.
    """
    with anyio.fail_after(1), pytest.raises(FatalConnectError):
        async with Multiplexer("ws://127.0.0.1:99999", **FAST):
            pass


def test_rotation_drain_zero_is_rejected() -> None:
    """Item 11: ``rotation_drain=0`` raises ValueError at construction.

    Fails on 848e4a7: no ValueError (0 was accepted: ``rotation_drain >= 0``).
    """
    with pytest.raises(ValueError, match="rotation_drain"):
        Multiplexer("ws://127.0.0.1:1", rotation_drain=0)


# -- item 12: a trigger that raises at once; the old link dying between attempts ------


class RaisingTrigger(Multiplexer):
    async def _when2create_new_ws(self) -> None:
        raise RuntimeError("no listen key")


@pytest.mark.anyio
async def test_a_trigger_that_raises_at_once_is_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 12: with ``rotation_interval=0.2``, a trigger that raises at once
    gives at most one rotation per interval (8 in 1.5 s), and one WARNING says so.

    Fails on 848e4a7: 23-24 rotations in 1.5 s (no rate limit).
    """
    caplog.set_level(logging.DEBUG, logger="wsmux")
    with FeedServer() as srv:
        mux = RaisingTrigger(srv.url, **opts(rotation_interval=0.2, **FAST))
        async with mux:
            await anyio.sleep(1.5)  # the span measured, not a wait for an event
            rotations = mux.stats().rotations
        # At most one rotation per rotation_interval: 1.5 / 0.2 + 1.
        assert 1 <= rotations <= 8, f"{rotations} rotations in 1.5 s"
        warnings = [
            r for r in caplog.records if r.levelno == logging.WARNING and "rate" in r.getMessage()
        ]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert mux.stats().disconnects == 0


@pytest.mark.anyio
async def test_old_link_lost_while_the_rotation_retries_is_an_unplanned_loss() -> None:
    """Item 12: the rotation's new connection is refused; the old one is dropped
    while the supervisor waits to retry: the disconnect callback runs,
    ``gaps="raise"`` streams get ConnectionGap, and a reconnection follows.

    Fails on 848e4a7: does NOT fail: 848e4a7 already treats this as an unplanned
    loss (kept as a regression test for the new supervisor).
    """
    disconnects: list[Any] = []
    with FeedServer() as srv:
        mux = Rotating(
            srv.url,
            backoff_base=0.3,
            backoff_cap=0.3,
            close_timeout=0.5,
            disconnect_fn=disconnects.append,
        )
        gapped = mux.stream_filter(gaps="raise")
        async with mux:
            with anyio.fail_after(3):
                old = (await srv.wait_for_connections_async(1))[0].id
            srv.refuse(None, status=503)
            mux.rotate.set()
            await until(lambda: mux.stats().connect_errors >= 1)
            srv.drop(conn=old)
            await until(lambda: len(disconnects) == 1)
            srv.refuse(0)
            with anyio.fail_after(3), pytest.raises(ConnectionGap):
                await gapped.receive()
            await until(lambda: mux.stats().reconnects >= 1 and mux.state == "open")
            assert mux.stats().disconnects == 1
