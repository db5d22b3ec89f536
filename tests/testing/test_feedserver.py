"""wsmux.testing.FeedServer, driven by real websocket and HTTP clients."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import urllib.request
import warnings
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError

import anyio
import orjson
import pytest
import trio
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as _connect

from wsmux.testing import FeedServer


def connect(url: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 2)
    kwargs.setdefault("close_timeout", 0.5)
    return _connect(url, proxy=None, legacy=True, **kwargs)


def recv_json(ws: ClientConnection, n: int, timeout: float = 2.0) -> list[Any]:
    return [json.loads(ws.recv(timeout)) for _ in range(n)]


def http(method: str, url: str) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=b"" if method != "DELETE" else None, method=method)
    try:
        with opener.open(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wsmux-feedserver"]


@pytest.fixture
def srv() -> Iterator[FeedServer]:
    with FeedServer(symbols=3) as server:
        yield server


# ----------------------------------------------------------------- lifecycle


def test_start_stop_idempotent_and_restart_on_same_port() -> None:
    server = FeedServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    server.start()
    port = server.port
    assert server.url == f"ws://127.0.0.1:{port}"
    assert server.http_url == f"http://127.0.0.1:{port}"
    assert server.running
    server.stop()
    server.stop()
    assert not server.running
    assert not server_threads()
    server.start()
    try:
        assert server.port == port
        with connect(server.url):
            server.wait_for_connections(1)
    finally:
        server.stop()
    assert server.stats().accepted == 1


def test_stop_leaves_no_thread_and_no_resource_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server = FeedServer().start()
        clients = [connect(server.url) for _ in range(3)]
        server.wait_for_connections(3)
        server.start_feed(rate=1000)
        server.half_open(conn=2)
        server.delay_handshake(5.0)
        server.schedule("garbage", every=0.01)
        server.stop()
        for ws in clients:
            ws.close()
        del server, clients
        gc.collect()
    assert not server_threads()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_port_in_use_raises_oserror(srv: FeedServer) -> None:
    with pytest.raises(OSError):
        FeedServer(port=srv.port).start()
    assert len(server_threads()) == 1


def test_stop_does_not_wait_for_delayed_handshakes(srv: FeedServer) -> None:
    srv.delay_handshake(5.0)
    errors: list[Exception] = []

    def client() -> None:
        try:
            connect(srv.url).close()
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    srv.wait_until(lambda: srv.stats().handshakes == 1, 1)
    started = time.monotonic()
    srv.stop()
    thread.join(2)
    assert time.monotonic() - started < 1.0
    assert len(errors) == 1 and isinstance(errors[0], InvalidStatus | ConnectionClosed)


def test_waits_time_out(srv: FeedServer) -> None:
    with pytest.raises(TimeoutError, match="1 open connections"):
        srv.wait_for_connections(1, timeout=0.02)
    with connect(srv.url), pytest.raises(TimeoutError):
        srv.wait_for_messages(1, timeout=0.02, conn=1)


def test_stop_closes_connections_with_going_away(srv: FeedServer) -> None:
    ws = connect(srv.url)
    srv.wait_for_connections(1)
    srv.stop()
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(1)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    ws.close()


def test_repr_hides_paths_and_keys(srv: FeedServer) -> None:
    key = srv.create_listen_key()
    with connect(f"{srv.url}/ws/{key}"):
        srv.wait_for_connections(1)
        (rec,) = srv.records()
        assert rec.path == f"/ws/{key}" and rec.listen_key == key and rec.user_stream
        assert key not in repr(rec) and key not in repr(srv)
        assert "open" in repr(rec)


# ---------------------------------------------------------------------- feed


def test_broadcast_feed_same_seqs_on_two_connections(srv: FeedServer) -> None:
    with connect(srv.url) as a, connect(srv.url + "/stream") as b:
        srv.wait_for_connections(2)
        srv.start_feed(count=300)
        assert srv.wait_feed_done() == 300
        seqs_a = [m["seq"] for m in recv_json(a, 300)]
        seqs_b = [m["seq"] for m in recv_json(b, 300)]
    assert seqs_a == seqs_b == list(range(1, 301))
    stats = srv.stats()
    assert (srv.sent, srv.last_seq, stats.frames_sent) == (300, 300, 600)
    assert [r.last_seq for r in srv.records()] == [300, 300]


def test_trade_messages_look_like_binance() -> None:
    with (
        FeedServer(symbols=["BTCUSDT", "ETHUSDT"], kinds=("trade",)) as srv,
        connect(srv.url) as ws,
    ):
        srv.wait_for_connections(1)
        srv.start_feed(count=50)
        msgs = recv_json(ws, 50)
    trade_ids: dict[str, list[int]] = defaultdict(list)
    for m in msgs:
        assert m["e"] == "trade" and m["s"] in ("BTCUSDT", "ETHUSDT")
        assert isinstance(m["E"], int) and m["T"] == m["E"] and isinstance(m["m"], bool)
        float(m["p"]), float(m["q"])  # decimal strings
        trade_ids[m["s"]].append(m["t"])
    for ids in trade_ids.values():
        assert ids == list(range(1, len(ids) + 1))


def test_depth_updates_chain_per_symbol() -> None:
    with FeedServer(symbols=4, kinds=("depth",)) as srv, connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.start_feed(count=400)
        msgs = recv_json(ws, 400)
    last: dict[str, int] = {}
    for m in msgs:
        assert m["e"] == "depthUpdate" and m["U"] == m["pu"] + 1 and m["u"] >= m["U"]
        assert m["b"] and m["a"]
        if m["s"] in last:
            assert m["pu"] == last[m["s"]]
        last[m["s"]] = m["u"]
    assert len(last) == 4


def test_rate_is_paced(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        started = time.monotonic()
        srv.start_feed(rate=1000, count=100)
        srv.wait_feed_done()
        elapsed = time.monotonic() - started
        assert len(recv_json(ws, 100)) == 100
    assert 0.08 <= elapsed < 0.5


def test_per_connection_feed_has_own_sequence(srv: FeedServer) -> None:
    with connect(srv.url) as a:
        srv.wait_for_connections(1)
        srv.start_feed(count=20, broadcast=False)
        with connect(srv.url) as b:  # opened after the start: gets its own feed too
            assert [m["seq"] for m in recv_json(a, 20)] == list(range(1, 21))
            assert [m["seq"] for m in recv_json(b, 20)] == list(range(1, 21))
            srv.wait_feed_done()
    assert srv.stats().feed_messages == 40


def test_min_clients_and_stop_feed(srv: FeedServer) -> None:
    srv.start_feed(rate=2000, min_clients=1)
    with connect(srv.url) as ws:
        first = json.loads(ws.recv(2))
        assert first["seq"] == 1  # nothing was produced before the client came
        srv.stop_feed()
        srv.wait_feed_done(1)


def test_silent_connection_gets_no_feed(srv: FeedServer) -> None:
    with connect(srv.url) as loud, connect(srv.url) as quiet:
        srv.wait_for_connections(2)
        srv.silence(conn=2)
        srv.start_feed(count=10)
        srv.wait_feed_done()
        assert len(recv_json(loud, 10)) == 10
        with pytest.raises(TimeoutError):
            quiet.recv(0.1)
        assert quiet.ping().wait(1)  # pings still answered


# ------------------------------------------------------ subscriptions, requests


def test_subscribe_list_and_filtering() -> None:
    with (
        FeedServer(symbols=["AAA", "BBB"], kinds=("trade",), require_subscribe=True) as srv,
        connect(srv.url) as ws,
    ):
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["aaa@trade"], "id": 1}))
        assert json.loads(ws.recv(2)) == {"result": None, "id": 1}
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert json.loads(ws.recv(2)) == {"result": ["aaa@trade"], "id": 2}
        srv.start_feed(count=40)
        srv.wait_feed_done()
        (rec,) = srv.records()
        msgs = recv_json(ws, rec.sent - 2)
        assert msgs and {m["s"] for m in msgs} == {"AAA"}
        ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["aaa@trade"], "id": 3}))
        assert json.loads(ws.recv(2)) == {"result": None, "id": 3}
        assert rec.subscriptions == set()


def test_request_echo_and_client_records(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        ws.send(json.dumps({"method": "ping.me", "params": [1, 2], "id": 7}))
        ws.send(json.dumps({"id": 8}))
        ws.send("not json")
        ws.send(b"\x01\x02")
        assert recv_json(ws, 2) == [{"result": [1, 2], "id": 7}, {"result": None, "id": 8}]
        msgs = srv.wait_for_messages(4, conn=1)
    assert msgs == [
        {"method": "ping.me", "params": [1, 2], "id": 7},
        {"id": 8},
        "not json",
        b"\x01\x02",
    ]
    assert srv.client_messages() == msgs and srv.stats().client_messages == 4


def test_send_and_broadcast(srv: FeedServer) -> None:
    with connect(srv.url) as a, connect(srv.url) as b:
        srv.wait_for_connections(2)
        assert srv.send({"x": 1}, conn=1) == 1
        assert srv.send("text") == 2  # newest open connection
        assert srv.broadcast(b"\x00bin") == 2
        assert json.loads(a.recv(1)) == {"x": 1}
        assert a.recv(1) == b"\x00bin"
        assert b.recv(1) == "text" and b.recv(1) == b"\x00bin"
    with pytest.raises(LookupError):
        srv.send("x", conn=99)


# --------------------------------------------------------------- listen keys


def test_listen_key_lifecycle_and_expiry_event(srv: FeedServer) -> None:
    status, body = http("POST", srv.http_url + "/listenKey")
    key = body["listenKey"]
    assert status == 200 and len(key) >= 32
    assert http("PUT", f"{srv.http_url}/listenKey?listenKey={key}") == (200, {})
    with connect(f"{srv.url}/ws/{key}") as user, connect(srv.url) as market:
        srv.wait_for_connections(2)
        srv.start_feed(count=5)
        srv.wait_feed_done()
        assert srv.send_user_event(key, {"e": "executionReport"}) == 1
        assert json.loads(user.recv(1)) == {"e": "executionReport"}  # no feed on user streams
        assert len(recv_json(market, 5)) == 5
        assert srv.expire_listen_key(key) == 1
        event = json.loads(user.recv(1))
        assert event["e"] == "listenKeyExpired" and event["listenKey"] == key
        assert isinstance(event["E"], int)
    with pytest.raises(InvalidStatus) as info:
        connect(f"{srv.url}/ws/{key}")
    assert info.value.response.status_code == 401
    assert http("DELETE", f"{srv.http_url}/listenKey?listenKey={key}")[0] == 400
    assert srv.stats().http_requests == 3


def test_listen_key_ttl_expires_and_closes() -> None:
    with FeedServer(listen_key_ttl=0.1, close_after_expiry=0.05) as srv:
        key = http("POST", srv.http_url + "/api/v3/userDataStream")[1]["listenKey"]
        with connect(f"{srv.url}/ws/{key}") as ws:
            assert json.loads(ws.recv(1))["e"] == "listenKeyExpired"
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(1)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        assert srv.listen_keys == []


def test_unknown_listen_key_is_refused_with_401(srv: FeedServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(f"{srv.url}/ws/{'0' * 64}")
    assert info.value.response.status_code == 401
    assert srv.stats().refused == 1 and srv.records()[0].status == 401


def test_delete_listen_key(srv: FeedServer) -> None:
    key = srv.create_listen_key()
    assert srv.listen_keys == [key]
    assert http("DELETE", f"{srv.http_url}/listenKey?listenKey={key}") == (200, {})
    assert srv.listen_keys == []
    keys = {srv.create_listen_key(), srv.create_listen_key()}
    assert len(keys) == 2 and srv.expire_listen_key() == 2 and srv.listen_keys == []


# -------------------------------------------------------------------- faults


def test_refuse_with_status_and_retry_after(srv: FeedServer) -> None:
    srv.refuse(2, status=503, retry_after=1)
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            connect(srv.url)
        assert info.value.response.status_code == 503
        assert info.value.response.headers["Retry-After"] == "1"
    srv.refuse(1, status=429)
    with pytest.raises(InvalidStatus) as info:
        connect(srv.url)
    assert (
        info.value.response.status_code == 429 and "Retry-After" not in info.value.response.headers
    )
    with connect(srv.url):
        srv.wait_for_connections(1)
    stats = srv.stats()
    assert (stats.handshakes, stats.refused, stats.accepted) == (4, 3, 1)
    assert stats.faults["refuse"] == 3
    assert [r.status for r in srv.records()] == [503, 503, 429, 101]
    for bad in (101, 200, 999):
        with pytest.raises(ValueError):
            srv.refuse(1, status=bad)


def test_handshake_attempts_are_timestamped(srv: FeedServer) -> None:
    srv.refuse(None, status=403)
    before = time.monotonic()
    for _ in range(5):
        with pytest.raises(InvalidStatus):
            connect(srv.url)
    times = srv.handshake_times()
    assert len(times) == 5 and all(before <= t <= time.monotonic() for t in times)
    assert times == sorted(times)
    srv.refuse(0)
    with connect(srv.url):
        srv.wait_for_connections(1)


def test_close_with_code_after_queued_frames(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.send({"last": True})
        assert srv.close_connections(4001, "bye") == 1
        assert json.loads(ws.recv(1)) == {"last": True}
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(1)
    assert info.value.rcvd is not None and (info.value.rcvd.code, info.value.rcvd.reason) == (
        4001,
        "bye",
    )
    srv.wait_until(lambda: srv.stats().open == 0, 1)
    assert srv.records()[0].close_code == 4001
    with pytest.raises(ValueError):
        srv.close_connections(1006)


def test_drop_without_close_frame(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        assert srv.drop() == 1
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(1)
    assert info.value.rcvd is None and info.value.sent is None
    srv.wait_until(lambda: srv.stats().open == 0, 1)
    assert srv.records()[0].close_code == 1006 and srv.stats().faults["drop"] == 1
    with pytest.raises(LookupError):
        srv.drop(conn=42)


def test_silence_for_seconds_then_resume(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.silence(0.15)
        srv.broadcast("lost")
        assert ws.ping().wait(1)
        with pytest.raises(TimeoutError):
            ws.recv(0.05)
        srv.wait_until(lambda: not srv.records()[0].silent, 1)
        srv.broadcast("back")
        assert ws.recv(1) == "back"


def test_half_open_stops_answering_pings(srv: FeedServer) -> None:
    with connect(srv.url, close_timeout=0.1) as ws:
        srv.wait_for_connections(1)
        assert srv.half_open() == 1
        srv.broadcast("never")
        assert not ws.ping().wait(0.2)
        with pytest.raises(TimeoutError):
            ws.recv(0.01)
        assert srv.resume() == 1
        assert ws.ping().wait(1)  # reading again: the pong comes
        srv.broadcast("back")
        assert ws.recv(1) == "back"  # "never" was not queued while half-open


def test_half_open_for_seconds_aborts(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.half_open(0.05)
        with pytest.raises(ConnectionClosedError):
            ws.recv(1)


def test_delay_handshake(srv: FeedServer) -> None:
    srv.delay_handshake(0.2, count=1)
    started = time.monotonic()
    with connect(srv.url):
        assert time.monotonic() - started >= 0.2
    srv.delay_handshake(0.5, count=1)
    with pytest.raises(TimeoutError):
        connect(srv.url, open_timeout=0.1)
    assert srv.stats().faults["delay_handshake"] == 2


def test_accept_then_drop(srv: FeedServer) -> None:
    srv.accept_then_drop(2)
    for _ in range(2):
        with connect(srv.url) as ws, pytest.raises(ConnectionClosedError):
            ws.recv(1)
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.send("hello")
        assert ws.recv(1) == "hello"
    stats = srv.stats()
    assert stats.accepted == 3 and stats.faults["accept_then_drop"] == 2


def test_garbage_frames(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.send_garbage("text")
        srv.send_garbage("binary")
        text, binary = ws.recv(1), ws.recv(1)
        assert isinstance(text, str) and isinstance(binary, bytes)
        with pytest.raises(ValueError):
            json.loads(text)
        srv.send_garbage("oversize", size=2**20 + 100)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(1)
        assert info.value.sent is not None and info.value.sent.code == 1009  # message too big
    with connect(srv.url, max_size=None) as big:
        srv.wait_for_connections(1)
        srv.send_garbage("oversize", size=3000, conn=2)
        assert len(big.recv(1)) == 3000
    assert srv.stats().garbage_sent == 4
    with pytest.raises(ValueError):
        srv.send_garbage("nonsense")  # type: ignore[arg-type]


def test_garbage_interleaved_in_feed(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.start_feed(count=200, garbage_ratio=0.2)
        srv.wait_feed_done()
        good = bad = 0
        while good < 200:
            try:
                orjson.loads(ws.recv(1))
                good += 1
            except orjson.JSONDecodeError:
                bad += 1
    assert bad == srv.stats().garbage_sent and 10 < bad < 80


def test_schedule_counts_faults(srv: FeedServer) -> None:
    with connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.schedule("garbage", every=0.01, count=3, target="all", kind="binary")
        frames = [ws.recv(1) for _ in range(3)]
        assert all(isinstance(f, bytes) for f in frames)
        srv.wait_until(lambda: srv.stats().faults.get("garbage") == 3, 1)
    with pytest.raises(ValueError):
        srv.schedule("explode", every=1)
    with pytest.raises(ValueError):
        srv.schedule("drop", every=1, code=4000)


def test_schedule_handshake_fault_and_cancel(srv: FeedServer) -> None:
    sid = srv.schedule("refuse", every=0.01, count=1, status=503)
    srv.wait_until(lambda: sid not in srv.active_schedules(), 1)
    with pytest.raises(InvalidStatus) as info:
        connect(srv.url)
    assert info.value.response.status_code == 503
    ids = [srv.schedule("drop", every=10), srv.schedule("close", every=10)]
    assert srv.active_schedules() == ids
    srv.cancel_schedule(ids[0])
    srv.wait_until(lambda: srv.active_schedules() == ids[1:], 1)
    srv.cancel_schedule()
    srv.wait_until(lambda: srv.active_schedules() == [], 1)
    with pytest.raises(LookupError):
        srv.schedule("drop", every=1, target=99)


def test_chaos_injects_random_faults(srv: FeedServer) -> None:
    clients = [connect(srv.url, close_timeout=0.1) for _ in range(3)]
    try:
        srv.wait_for_connections(3)
        srv.chaos(every=0.02, jitter=0.01, count=6)
        srv.wait_until(lambda: sum(srv.stats().faults.values()) >= 6, 2)
    finally:
        for ws in clients:
            ws.close()
    assert set(srv.stats().faults) <= {"close", "drop", "silence", "garbage", "half_open"}


# ---------------------------------------------------------------- async use


def test_async_context_and_waits_under_asyncio() -> None:
    from websockets.asyncio.client import connect as aconnect

    async def main() -> None:
        async with FeedServer() as srv, aconnect(srv.url, proxy=None) as ws:
            with anyio.fail_after(2):
                await srv.wait_for_connections_async(1)
                await ws.send('{"id": 1}')
                assert await srv.wait_for_messages_async(1) == [{"id": 1}]
                srv.start_feed(count=10)
                assert await srv.wait_feed_done_async() == 10
                assert json.loads(await ws.recv())["result"] is None
            # stop_async must not block this loop: the client answers the close here
        assert not srv.running

    asyncio.run(main())


def test_async_waits_under_trio() -> None:
    async def main() -> None:
        async with FeedServer() as srv:
            with trio.fail_after(2):
                ws = await trio.to_thread.run_sync(connect, srv.url)
                try:
                    records = await srv.wait_for_connections_async(1)
                    assert records[0].is_open
                    with pytest.raises(TimeoutError), anyio.fail_after(0.05):
                        await srv.wait_for_connections_async(2)
                finally:
                    await trio.to_thread.run_sync(ws.close)

    trio.run(main)
