"""The picows transport (``transport="picows"``): asyncio only, real sockets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import websockets.exceptions as wse

from wsmux import FatalConnectError, Multiplexer
from wsmux.connection._picows import PicowsConnection, picows_connect
from wsmux.fanout._stream import Stream
from wsmux.testing import FeedServer

pytest.importorskip("picows")

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {
    "transport": "picows",
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "reset_after": 0.5,
    "close_timeout": 0.2,
    "open_timeout": 2.0,
}


@pytest.fixture
def anyio_backend() -> str:
    """picows runs on asyncio only."""
    return "asyncio"


async def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():  # state that another task changes
            await anyio.sleep(0.005)


async def take(stream: Stream, n: int) -> list[Any]:
    out: list[Any] = []
    with anyio.fail_after(5):
        async for msg in stream:
            out.append(msg)
            if len(out) == n:
                break
    return out


async def test_feed_arrives_complete_and_in_order() -> None:
    total = 5000
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST)
        stream = mux.stream_filter(maxsize=total)
        async with mux:
            assert isinstance(mux.present_ws, PicowsConnection)
            srv.start_feed(count=total, min_clients=1)
            got = await take(stream, total)
            stats = mux.stats()
    assert [m["seq"] for m in got] == list(range(1, total + 1))
    assert stats.messages == total and stats.parse_errors == 0
    assert (stats.disconnects, stats.reconnects) == (0, 0)


async def test_send_and_request() -> None:
    with FeedServer() as srv:
        async with Multiplexer(srv.url, **FAST) as mux:
            await mux.send({"method": "PING", "id": 7})
            await mux.send("plain text")
            with anyio.fail_after(3):
                await srv.wait_for_messages_async(2)
            reply = await mux.request({"method": "SUBSCRIBE", "params": ["sym1@trade"]})
    assert srv.client_messages()[:2] == [{"method": "PING", "id": 7}, "plain text"]
    assert reply["id"] is not None


async def test_drop_is_one_counted_reconnect() -> None:
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST)
        stream = mux.stream_filter(maxsize=100_000)
        async with mux:
            srv.start_feed(rate=2000, min_clients=1)
            await take(stream, 10)
            assert srv.drop() == 1
            await wait_for(lambda: mux.stats().reconnects == 1)
            await take(stream, 10)
            stats = mux.stats()
    assert (stats.disconnects, stats.reconnects, stats.connects) == (1, 1, 2)
    assert stats.last_disconnect == "connection dropped without a close frame"


async def test_server_close_code_is_reported() -> None:
    with FeedServer() as srv:
        async with Multiplexer(srv.url, **FAST) as mux:
            srv.close_connections(4001, "maintenance")
            await wait_for(lambda: mux.stats().reconnects == 1)
            reason = mux.stats().last_disconnect
    assert reason == "close code 4001 (maintenance) from the server"


async def test_oversized_message_closes_with_1009_and_reconnects() -> None:
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, **(FAST | {"max_size": 4096}))
        stream = mux.stream_filter(maxsize=100_000)
        async with mux:
            srv.start_feed(rate=2000, min_clients=1)
            await take(stream, 10)
            srv.send_garbage("oversize", size=4097)
            await wait_for(lambda: mux.stats().reconnects == 1)
            await take(stream, 10)
            stats = mux.stats()
    assert (stats.disconnects, stats.reconnects, stats.connects) == (1, 1, 2)
    assert "1009" in str(stats.last_disconnect), stats.last_disconnect
    assert srv.record(1).close_code == 1009


async def test_401_is_fatal() -> None:
    with FeedServer() as srv:
        srv.refuse(None, status=401)
        mux = Multiplexer(srv.url, **FAST)
        with pytest.raises(FatalConnectError) as info:
            async with mux:
                pytest.fail("connected despite 401")
    assert info.value.status == 401
    assert mux.state == "failed" and mux.stats().connect_errors == 1


async def test_503_is_retried() -> None:
    with FeedServer() as srv:
        srv.refuse(2, status=503)
        async with Multiplexer(srv.url, **FAST) as mux:
            stats = mux.stats()
    assert (stats.connect_errors, stats.connects) == (2, 1)


async def test_connection_raises_like_websockets_and_keeps_secrets() -> None:
    with FeedServer() as srv:
        srv.refuse(1, status=403)
        url = srv.url + "/stream?token=secretlistenkey123"
        with pytest.raises(wse.InvalidStatus) as refused:
            await picows_connect(
                url, max_size=None, ping_interval=None, ping_timeout=None,
                open_timeout=2, close_timeout=0.2,
            )  # fmt: skip
        assert refused.value.response.status_code == 403
        assert "secretlistenkey123" not in str(refused.value)
        conn = await picows_connect(
            url, max_size=2**20, ping_interval=5, ping_timeout=5,
            open_timeout=2, close_timeout=0.2,
        )  # fmt: skip
        assert "secretlistenkey123" not in repr(conn)
        srv.close_connections(1000, "bye")
        with anyio.fail_after(3), pytest.raises(wse.ConnectionClosedOK):
            await conn.recv()
        await conn.close()
        with pytest.raises(wse.ConnectionClosed):
            await conn.send("late")


async def test_exit_leaves_nothing_running() -> None:
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST)
        stream = mux.stream_filter()
        async with mux:
            srv.start_feed(rate=5000, min_clients=1)
            await take(stream, 5)
        assert mux.state == "closed"
        await wait_for(lambda: not srv.open_connections())


async def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        Multiplexer("ws://127.0.0.1:1", transport="aiohttp")  # type: ignore[arg-type]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_fails_at_start_with_a_clear_error() -> None:
    mux = Multiplexer("ws://127.0.0.1:1", **FAST)
    with pytest.raises(FatalConnectError, match="asyncio only"):
        async with mux:
            pytest.fail("started under trio")


async def test_rotations_are_fenced_and_exactly_once(caplog: pytest.LogCaptureFixture) -> None:
    """picows answers the rotation's fence: no gap, every seq once, in order."""
    caplog.set_level(logging.INFO, logger="wsmux")
    total = 15000

    class Rotating(Multiplexer):
        async def _when2create_new_ws(self) -> None:
            await anyio.sleep(0.15)

        def _message_id(self, msg: Any) -> Any:
            return msg.get("seq")

    with FeedServer() as srv:
        mux = Rotating(srv.url, rotation_interval=0.05, **FAST)
        stream = mux.stream_filter(maxsize=total + 100, gaps="raise")
        async with mux:
            srv.start_feed(rate=6000, count=total, min_clients=1)
            got = await take(stream, total)
            stats = mux.stats()
    assert not [r for r in caplog.records if "has no fence" in r.getMessage()]
    assert [m["seq"] for m in got] == list(range(1, total + 1))
    assert stats.rotations >= 3 and stats.rotation_gaps == 0
    assert (stats.disconnects, stats.reconnects) == (0, 0)
    assert stats.duplicates > 0  # the overlaps were real
