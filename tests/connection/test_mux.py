"""The Multiplexer against a real websocket server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import pytest

import wsmux
from wsmux import (
    ConnectionGap,
    FatalConnectError,
    Multiplexer,
    NotConnected,
    RequestTimeout,
    RetriesExhausted,
)
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1, "open_timeout": 2.0, "close_timeout": 0.5}


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(symbols=4) as srv:
        yield srv


async def collect(stream: wsmux.Stream, n: int) -> list[Any]:
    out: list[Any] = []
    with anyio.fail_after(5):
        async for msg in stream:
            out.append(msg)
            if len(out) == n:
                break
    return out


async def test_connects_streams_and_exits_cleanly(server: FeedServer) -> None:
    mux = Multiplexer(server.url + "/stream", **FAST)
    early = mux.stream_filter()  # created before start: misses nothing
    trades = mux.stream_filter({"e": "trade"})
    assert mux.state == "idle"
    server.start_feed(count=200, min_clients=1)
    async with mux:
        assert mux.state == "open"
        assert mux.present_ws is not None
        got = await collect(early, 200)
        assert [m["seq"] for m in got] == list(range(1, 201))
        assert all(m["e"] == "trade" for m in await collect(trades, 10))
    assert mux.state == "closed"
    assert mux.present_ws is None
    assert [m async for m in early] == []  # iteration ends cleanly
    stats = mux.stats()
    assert stats.connects == 1 and stats.messages == 200 and stats.reconnects == 0
    await mux.exit()  # idempotent after the context


async def test_exit_is_idempotent_and_ends_waiting_readers(server: FeedServer) -> None:
    mux = Multiplexer(server.url, **FAST)
    stream = mux.stream_filter()
    ended = anyio.Event()

    async def reader() -> None:
        async for _ in stream:
            pass
        ended.set()

    async with mux, anyio.create_task_group() as tg:
        tg.start_soon(reader)
        with anyio.fail_after(2):
            await mux.exit()
            await mux.exit()
            await ended.wait()
    assert mux.state == "closed"


async def test_exit_from_inside_an_async_handler(server: FeedServer) -> None:
    mux = Multiplexer(server.url, **FAST)
    seen: list[int] = []

    async def handler(msg: Any) -> None:
        seen.append(msg["seq"])
        await mux.exit()

    mux.add_handler(handler)
    server.start_feed(rate=500, min_clients=1)
    with anyio.fail_after(3):
        async with mux:
            while mux.state == "open":
                await mux._status.wait_change(anyio.current_time() + 1)
    assert mux.state == "closed" and seen


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_refusal_is_fatal_at_once(server: FeedServer, status: int) -> None:
    server.refuse(None, status=status)
    mux = Multiplexer(server.url, **FAST)
    stream = mux.stream_filter()
    with anyio.fail_after(2), pytest.raises(FatalConnectError) as info:
        async with mux:
            pass
    assert info.value.status == status
    assert server.stats().handshakes == 1
    assert mux.state == "failed"
    with pytest.raises(FatalConnectError):
        await stream.receive()


@pytest.mark.parametrize("url", ["not a url", "http://127.0.0.1:1/x", "ws://"])
async def test_bad_urls_are_fatal(url: str) -> None:
    with anyio.fail_after(2), pytest.raises(FatalConnectError):
        async with Multiplexer(url, **FAST):
            pass


async def test_retries_exhausted(server: FeedServer) -> None:
    server.refuse(None, status=503)
    with anyio.fail_after(3), pytest.raises(RetriesExhausted) as info:
        async with Multiplexer(server.url, max_attempts=3, **FAST):
            pass
    assert info.value.status == 503
    assert server.stats().handshakes == 3


async def test_503_then_success(server: FeedServer) -> None:
    server.refuse(3, status=503)
    async with Multiplexer(server.url, **FAST) as mux:
        assert mux.stats().connect_errors == 3
    assert server.stats().handshakes == 4


async def test_unplanned_loss_reconnects_with_gap_and_callbacks(server: FeedServer) -> None:
    events: list[Any] = []

    async def on_disconnect(mux: Multiplexer) -> None:
        events.append("down")

    def on_reconnect(mux: Multiplexer, a: int, b: str) -> None:
        events.append(("up", a, b))

    mux = Multiplexer(
        server.url,
        disconnect_fn=on_disconnect,
        reconnect_fn=on_reconnect,
        reconnect_args=(1, "x"),
        **FAST,
    )
    gaps = mux.stream_filter(gaps="raise")
    plain = mux.stream_filter()
    async with mux:
        server.broadcast({"n": 1})
        assert (await gaps.receive())["n"] == 1
        server.drop()
        with anyio.fail_after(3):
            with pytest.raises(ConnectionGap):
                await gaps.receive()
            await mux.wait_connected()
            await server.wait_for_connections_async(1)
        server.broadcast({"n": 2})
        assert (await gaps.receive())["n"] == 2
        assert [m["n"] for m in await collect(plain, 2)] == [1, 2]
        with anyio.fail_after(2):
            while len(events) < 2:
                await anyio.sleep(0.01)
    assert events == ["down", ("up", 1, "x")]
    stats = mux.stats()
    assert (stats.reconnects, stats.disconnects, stats.connects) == (1, 1, 2)
    assert stats.last_disconnect is not None


class ListenKeyAdapter(Multiplexer):
    """The seed 004 pattern: rotate when the listen key expires."""

    def __init__(self, server: FeedServer) -> None:
        super().__init__(None, **FAST)
        self.server = server
        self.keys: list[str] = []

    async def _create_ws(self) -> Any:
        key = self.server.create_listen_key()
        self.keys.append(key)
        self.url = f"{self.server.url}/ws/{key}"
        return await super()._create_ws()

    async def _when2create_new_ws(self) -> None:
        async with self.stream_filter([{"e": "listenKeyExpired"}]) as expired:
            with anyio.move_on_after(30):
                await expired.receive()

    def _message_id(self, msg: Any) -> Any:
        return msg.get("uid")


async def test_planned_rotation_on_listen_key_expiry(server: FeedServer) -> None:
    mux = ListenKeyAdapter(server)
    gaps = mux.stream_filter([{"uid": lambda v: True}], gaps="raise")
    async with mux:
        for i in range(5):
            server.send_user_event(mux.keys[-1], {"e": "ORDER", "uid": i})
        got = await collect(gaps, 5)
        server.expire_listen_key(mux.keys[-1])
        with anyio.fail_after(3):
            while mux.stats().rotations < 1:
                await anyio.sleep(0.01)
        for i in range(5, 10):
            server.send_user_event(mux.keys[-1], {"e": "ORDER", "uid": i})
        got += await collect(gaps, 5)  # no ConnectionGap: rotation is planned
    assert [m["uid"] for m in got] == list(range(10))
    assert len(mux.keys) == 2
    assert mux.stats().reconnects == 0


async def test_rotation_failure_keeps_serving_on_the_old_connection(server: FeedServer) -> None:
    rotate = anyio.Event()

    class Rotating(Multiplexer):
        async def _when2create_new_ws(self) -> None:
            await rotate.wait()

    mux = Rotating(server.url, **FAST)
    stream = mux.stream_filter()
    async with mux:
        server.refuse(3, status=503)
        rotate.set()
        server.broadcast({"n": 1})
        assert (await stream.receive())["n"] == 1
        with anyio.fail_after(3):
            while mux.stats().rotations < 1:
                await anyio.sleep(0.01)
        assert mux.stats().connect_errors >= 3
        assert mux.stats().reconnects == 0


async def test_send_request_and_subscription_replay(server: FeedServer) -> None:
    async with Multiplexer(server.url, **FAST) as mux:
        await mux.send({"hello": 1})
        await mux.send('{"raw": true}')
        reply = await mux.request({"method": "PING", "params": [1]})
        assert reply["result"] == [1] and reply["id"] == 1
        await mux.subscribe("sym1@trade", "sym2@trade")
        await mux.subscribe("sym1@trade")
        await mux.unsubscribe("sym2@trade")
        assert mux.topics == ["sym1@trade"]
        msgs = await server.wait_for_messages_async(5)
        assert msgs[0] == {"hello": 1} and msgs[1] == {"raw": True}
        assert msgs[3]["method"] == "SUBSCRIBE" and msgs[3]["params"] == [
            "sym1@trade",
            "sym2@trade",
        ]
        assert msgs[4]["method"] == "UNSUBSCRIBE" and msgs[4]["params"] == ["sym2@trade"]
        first = server.open_connections()[-1].id
        server.drop()
        with anyio.fail_after(3):
            while mux.stats().reconnects < 1:
                await anyio.sleep(0.01)
            # The server may not have seen the drop, nor the new connection, yet.
            await server.wait_until_async(
                lambda: any(r.id != first for r in server.open_connections())
            )
        second = next(r for r in server.open_connections() if r.id != first)
        with anyio.fail_after(2):
            while not server.client_messages(second.id):
                await anyio.sleep(0.01)
        replay = server.client_messages(second.id)[0]
        assert replay["method"] == "SUBSCRIBE" and replay["params"] == ["sym1@trade"]


async def test_subscriptions_made_before_start_are_sent_on_connect(server: FeedServer) -> None:
    mux = Multiplexer(server.url, subscribe_chunk=2, **FAST)
    await mux.subscribe("a", "b", "c")
    async with mux:
        msgs = await server.wait_for_messages_async(2)
    assert [m["params"] for m in msgs[:2]] == [["a", "b"], ["c"]]


async def test_demand_driven_topics(server: FeedServer) -> None:
    async with Multiplexer(server.url, **FAST) as mux:
        one = mux.stream_filter({"s": "SYM1"}, topics=["sym1@trade"])
        two = mux.stream_filter({"s": "SYM1"}, topics=["sym1@trade"])
        msgs = await server.wait_for_messages_async(1)
        await one.close()
        assert mux.topics == ["sym1@trade"]
        await two.close()
        msgs = await server.wait_for_messages_async(2)
        assert mux.topics == []
    assert [m["method"] for m in msgs] == ["SUBSCRIBE", "UNSUBSCRIBE"]


async def test_request_timeout_and_send_not_connected(server: FeedServer) -> None:
    class Quiet(Multiplexer):
        def _parse_raw_data(self, raw: Any) -> Any:  # type: ignore[override]
            msg = orjson.loads(raw)
            return None if "result" in msg else msg  # swallow replies

    async with Quiet(server.url, **FAST) as mux:
        with pytest.raises(RequestTimeout):
            await mux.request({"method": "PING"}, timeout=0.2)
        server.refuse(None, status=503)
        server.drop()
        with anyio.fail_after(2):
            while mux.state == "open":
                await anyio.sleep(0.01)
        with pytest.raises(NotConnected):
            await mux.send({"x": 1}, timeout=0.2)


async def test_outbound_rate_limit_is_shared(server: FeedServer) -> None:
    async with Multiplexer(server.url, send_rate=(5, 0.25), **FAST) as mux:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(mux.send, {"i": i})
        elapsed = anyio.current_time() - start
        assert len(await server.wait_for_messages_async(10)) == 10
    assert elapsed >= 0.2  # the second five waited for the window


@dataclass
class Trade:
    s: str
    seq: int


@dataclass
class Depth:
    s: str
    seq: int


async def test_listen_typed_messages(server: FeedServer) -> None:
    class Typed(Multiplexer):
        async def _parse_raw_data(self, raw: Any) -> Any:
            msg = orjson.loads(raw)
            cls = Trade if msg.get("e") == "trade" else Depth
            return cls(msg.get("s", ""), msg.get("seq", 0))

    mux = Typed(server.url, **FAST)
    trades = mux.listen(Trade)
    sym1 = mux.listen((Trade, Depth), {"s": "SYM1"})
    server.start_feed(count=100, min_clients=1)
    async with mux:
        got = await collect(trades, 10)
        assert all(isinstance(m, Trade) for m in got)
        assert all(m.s == "SYM1" for m in await collect(sym1, 5))
    with pytest.raises(TypeError):
        mux.listen("Trade")  # type: ignore[arg-type]


async def test_parse_errors_are_counted_and_the_feed_goes_on(server: FeedServer) -> None:
    async with Multiplexer(server.url, **FAST) as mux:
        stream = mux.stream_filter()
        server.send_garbage(kind="text")
        server.send_garbage(kind="binary")
        server.broadcast({"ok": 1})
        assert await stream.receive() == {"ok": 1}
        assert mux.stats().parse_errors == 2


async def test_oversized_frame_is_a_counted_reconnect(server: FeedServer) -> None:
    async with Multiplexer(server.url, max_size=1000, **FAST) as mux:
        stream = mux.stream_filter()
        server.send_garbage(kind="oversize", size=5000)
        with anyio.fail_after(3):
            while mux.stats().reconnects < 1:
                await anyio.sleep(0.01)
        assert "1009" in str(mux.stats().last_disconnect)
        await server.wait_for_connections_async(1)
        server.broadcast({"ok": 1})
        with anyio.fail_after(2):
            assert await stream.receive() == {"ok": 1}


async def test_silent_server_is_replaced_after_stale_after(server: FeedServer) -> None:
    async with Multiplexer(server.url, stale_after=0.2, **FAST) as mux:
        server.start_feed(rate=200)
        server.silence()
        with anyio.fail_after(3):
            while mux.stats().reconnects < 1:
                await anyio.sleep(0.01)
        assert mux.stats().stale == 1
        server.stop_feed()


async def test_half_open_server_is_detected_by_ping_timeout(server: FeedServer) -> None:
    async with Multiplexer(server.url, ping_interval=0.1, ping_timeout=0.2, **FAST) as mux:
        server.half_open()
        with anyio.fail_after(3):
            while mux.stats().reconnects < 1:
                await anyio.sleep(0.01)


async def test_fatal_error_after_start_ends_streams_and_raises(server: FeedServer) -> None:
    mux = Multiplexer(server.url, **FAST)
    stream = mux.stream_filter()
    with anyio.fail_after(3), pytest.raises(FatalConnectError):
        async with mux:
            server.refuse(None, status=401)
            server.drop()
            with pytest.raises(FatalConnectError):
                async for _ in stream:
                    pass
    assert mux.state == "failed"


async def test_secrets_never_appear_in_logs_reprs_or_errors(
    server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "SECRETlistenKEY0123456789abcdef"
    url = f"{server.url}/ws/{secret}?token=HUSH"
    caplog.set_level(logging.DEBUG)
    server.refuse(1, status=503)
    mux = Multiplexer(url, transport="websockets", **FAST)  # websockets' own debug lines
    with pytest.raises(FatalConnectError) as info:
        async with mux:  # unknown listen key: 401 after one 503
            pass
    # The test server logs the path it serves; every client-side line must not.
    client_lines = [
        r.getMessage() for r in caplog.records if not r.name.startswith("wsmux.testing")
    ]
    assert any("GET" in line for line in client_lines)  # websockets' debug lines are there
    texts = [*client_lines, repr(mux), str(info.value), repr(info.value)]
    assert all(secret not in t and "HUSH" not in t for t in texts)
    assert f"127.0.0.1:{server.port}" in str(info.value)


async def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        Multiplexer("ws://x", open_timeout=0)
    with pytest.raises(ValueError):
        Multiplexer("ws://x", max_attempts=0)
    with pytest.raises(TypeError):
        Multiplexer(b"ws://x")  # type: ignore[arg-type]
    mux = Multiplexer("ws://x")
    with pytest.raises(TypeError):
        await mux.subscribe("")
    with pytest.raises(TypeError):
        await mux.request(["not", "a", "dict"])  # type: ignore[arg-type]
    await mux.exit()


@pytest.fixture
async def running(server: FeedServer) -> AsyncIterator[Multiplexer]:
    async with Multiplexer(server.url, **FAST) as mux:
        yield mux


async def test_wait_connected_and_stats(running: Multiplexer) -> None:
    await running.wait_connected(timeout=1)
    stats = running.stats()
    assert stats.state == "open" and stats.streams == 0


async def test_handshake_timeout_is_retried(server: FeedServer) -> None:
    server.delay_handshake(2.0, count=1)  # longer than open_timeout
    opts = {**FAST, "open_timeout": 0.3}
    with anyio.fail_after(3):
        async with Multiplexer(server.url, **opts) as mux:
            assert mux.stats().connect_errors == 1
    assert server.stats().handshakes == 2


async def test_parse_errors_are_logged_rate_limited_with_a_short_sample(
    server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsmux")
    async with Multiplexer(server.url, **FAST) as mux:
        stream = mux.stream_filter()
        for _ in range(20):
            server.send("x" * 5000)
        server.broadcast({"ok": 1})
        with anyio.fail_after(2):
            assert await stream.receive() == {"ok": 1}
        assert mux.stats().parse_errors == 20
    lines = [r.getMessage() for r in caplog.records if "cannot parse" in r.getMessage()]
    assert len(lines) == 1  # the other 19 are counted, not logged
    assert "(5000 in all)" in lines[0] and len(lines[0]) < 400
