"""FeedServer's exchange limits, delay injection and per-connection targeting."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as _connect

import wsmux
from wsmux.testing import FeedServer


def connect(url: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 2)
    kwargs.setdefault("close_timeout", 0.5)
    return _connect(url, proxy=None, **kwargs)


def request(ws: ClientConnection, method: str, params: list[str], rid: int) -> Any:
    ws.send(json.dumps({"method": method, "params": params, "id": rid}))
    return json.loads(ws.recv(5))


def refused(url: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        connect(url)
    return info.value


# ------------------------------------------------------------- topic limit


def test_subscribe_over_the_topic_limit_is_refused_whole() -> None:
    with FeedServer(symbols=5, max_topics_per_connection=3) as srv, connect(srv.url) as ws:
        assert request(ws, "SUBSCRIBE", ["sym0@trade", "sym1@trade"], 1) == {
            "result": None,
            "id": 1,
        }
        over = request(ws, "SUBSCRIBE", ["sym2@trade", "sym3@trade"], 2)
        assert over == {"error": {"code": 2, "msg": "Max number of streams exceeded"}, "id": 2}
        assert request(ws, "LIST_SUBSCRIPTIONS", [], 3)["result"] == ["sym0@trade", "sym1@trade"]
        # Re-subscribing a topic it has does not count twice; the third topic fits.
        assert "error" not in request(ws, "SUBSCRIBE", ["sym1@trade", "sym2@trade"], 4)
        assert request(ws, "UNSUBSCRIBE", ["sym0@trade"], 5)["result"] is None
        assert "error" not in request(ws, "SUBSCRIBE", ["sym3@trade"], 6)
        (rec,) = srv.open_connections()
        assert rec.subscriptions == {"sym1@trade", "sym2@trade", "sym3@trade"}
        assert srv.stats().over_limit_errors == 1


def test_a_url_naming_too_many_streams_is_refused() -> None:
    with FeedServer(max_topics_per_connection=2) as srv:
        error = refused(srv.url + "/stream?streams=sym0@trade/sym1@trade/sym2@trade")
        assert error.response.status_code == 400
        with connect(srv.url + "/stream?streams=sym0@trade/sym1@trade"):
            pass
        assert srv.stats().over_limit_errors == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_topic_limit_is_checked(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        FeedServer(max_topics_per_connection=bad)


# ----------------------------------------------------------- connect limit


def test_connect_limit_answers_429_then_418() -> None:
    with FeedServer(connect_limit=(3, 60.0)) as srv:
        for _ in range(3):
            with connect(srv.url):
                pass
        limited = refused(srv.url).response
        assert limited.status_code == 429
        assert 0 < float(limited.headers["Retry-After"]) <= 60
        banned = refused(srv.url).response  # did not wait: banned
        assert banned.status_code == 418
        assert json.loads(banned.body)["code"] == -1003
        stats = srv.stats()
    assert (stats.connect_attempts, stats.connect_rate_limited, stats.connect_banned) == (5, 1, 1)
    assert stats.connect_window_max == 5 and stats.accepted == 3 and stats.refused == 2


def test_connect_limit_admits_again_after_retry_after() -> None:
    with FeedServer(connect_limit=(2, 0.3)) as srv:
        for _ in range(2):
            with connect(srv.url):
                pass
        limited = refused(srv.url).response
        assert limited.status_code == 429
        time.sleep(float(limited.headers["Retry-After"]))  # the window itself is under test
        with connect(srv.url):
            pass
        stats = srv.stats()
    assert (stats.connect_rate_limited, stats.connect_banned, stats.accepted) == (1, 0, 3)


def test_a_paced_client_never_exceeds_the_budget() -> None:
    with FeedServer(connect_limit=(3, 0.2)) as srv:
        for _ in range(6):
            with connect(srv.url):
                pass
            time.sleep(0.07)  # three attempts per 0.21 s: under the limit by construction
        stats = srv.stats()
    assert stats.connect_window_max <= 3 and stats.connect_rate_limited == 0


@pytest.mark.anyio
async def test_a_multiplexer_waits_out_retry_after_and_is_never_banned() -> None:
    """Reconnecting at once after a drop meets a 429; wsmux honours Retry-After."""
    async with FeedServer(connect_limit=(1, 1.0)) as srv:
        mux = wsmux.Multiplexer(srv.url, backoff_base=0.01, backoff_cap=0.02)
        async with mux:
            srv.drop()
            with anyio.fail_after(15):
                await srv.wait_until_async(lambda: srv.stats().accepted == 2)
        stats = srv.stats()
    assert stats.connect_rate_limited >= 1 and stats.connect_banned == 0
    assert stats.connect_window_max == 2  # the refused attempt, and no other


@pytest.mark.anyio
async def test_a_banned_multiplexer_fails_with_the_418() -> None:
    async with FeedServer(connect_limit=(1, 30.0)) as srv:
        with connect(srv.url):
            pass
        assert refused(srv.url).response.status_code == 429
        with pytest.raises(wsmux.FatalConnectError, match="418"), anyio.fail_after(15):
            async with wsmux.Multiplexer(srv.url):
                pass
        assert srv.stats().connect_banned == 1


@pytest.mark.parametrize("bad", [(0, 1.0), (1, 0), (1, -1.0), (1.5, 1.0), [1, 1.0], 5, (1,)])
def test_limits_are_checked(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        FeedServer(connect_limit=bad)
    with pytest.raises((TypeError, ValueError)):
        FeedServer(inbound_rate_limit=bad)


# ------------------------------------------------------------ inbound rate


def test_inbound_rate_over_the_limit_closes_with_1008() -> None:
    with FeedServer(inbound_rate_limit=(5, 10.0)) as srv:
        with connect(srv.url) as ws:
            for i in range(5):
                request(ws, "SUBSCRIBE", [f"sym{i}@trade"], i)
            (rec,) = srv.open_connections()
            assert rec.inbound == 5 and rec.max_inbound_per_window == 5
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 99}))
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ws.recv(5)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "Too many requests")
        srv.wait_until(lambda: not srv.open_connections())
        assert srv.record(rec.id).max_inbound_per_window == 6
        assert srv.stats().inbound_rate_closes == 1


def test_pings_count_against_the_inbound_rate() -> None:
    with FeedServer(inbound_rate_limit=(3, 10.0)) as srv, connect(srv.url) as ws:
        for _ in range(3):
            ws.ping().wait(5)
        ws.ping()
        srv.wait_until(lambda: srv.stats().inbound_rate_closes == 1)
        with pytest.raises(ConnectionClosed):
            ws.recv(5)
        srv.wait_until(lambda: srv.records()[0].closed_at is not None)
        assert srv.records()[0].close_code == 1008


def test_inbound_rate_is_measured_without_a_limit() -> None:
    with FeedServer() as srv, connect(srv.url) as ws:
        for i in range(4):
            request(ws, "SUBSCRIBE", [f"sym{i}@trade"], i)
        assert srv.open_connections()[0].inbound == 4
        assert 1 <= srv.stats().max_inbound_per_window <= 4
        assert srv.stats().inbound_rate_closes == 0


# ------------------------------------------------- targeting, delay, jitter


def test_find_a_connection_by_topic_or_path_and_fault_only_it() -> None:
    with (
        FeedServer(symbols=3) as srv,
        connect(srv.url + "/ws/sym0@trade") as a,
        connect(srv.url + "/stream?streams=sym1@depth@100ms") as b,
        connect(srv.url) as c,
    ):
        request(c, "SUBSCRIBE", ["SYM2@trade"], 1)
        srv.wait_for_connections(3)
        (ra,) = srv.open_connections(topic="sym0@trade")
        (rb,) = srv.open_connections(topic="SYM1@depth")
        (rc,) = srv.open_connections(topic="sym2@trade")
        assert srv.open_connections(path="streams=") == [rb]
        assert srv.open_connections(topic="sym2@depth") == []
        assert srv.drop(conn=rb.id) == 1
        srv.wait_until(lambda: len(srv.open_connections()) == 2)
        assert {r.id for r in srv.open_connections()} == {ra.id, rc.id}
        a.ping().wait(5)
        with pytest.raises(ConnectionClosed):
            b.recv(5)


def feed_seqs(ws: ClientConnection, count: int) -> list[tuple[int, float]]:
    """``(seq, seconds from the message's event time to its arrival)`` of ``count`` messages."""
    got = []
    for _ in range(count):
        msg = json.loads(ws.recv(10))
        got.append((msg["seq"], time.time() - msg["E"] / 1000))
    return got


def test_delay_keeps_order_and_adds_at_least_the_fixed_delay() -> None:
    with FeedServer(symbols=2) as srv, connect(srv.url) as slow, connect(srv.url) as fast:
        srv.wait_for_connections(2)
        first = srv.open_connections()[0].id
        assert srv.delay(fixed=0.05, jitter=0.02, conn=first) == 1
        assert srv.record(first).delay == (0.05, 0.02)
        srv.start_feed(rate=2000, count=200)
        got = feed_seqs(slow, 200)
        assert [seq for seq, _ in got] == list(range(1, 201)), "a delayed frame overtook another"
        assert min(late for _, late in got) >= 0.05 - 0.002  # E is in ms
        assert [seq for seq, _ in feed_seqs(fast, 200)] == list(range(1, 201))
        assert srv.stats().faults["delay"] == 1


def test_a_delayed_connection_does_not_hold_back_the_others() -> None:
    with FeedServer(symbols=2) as srv, connect(srv.url) as slow, connect(srv.url) as fast:
        srv.wait_for_connections(2)
        srv.delay(fixed=60.0, conn=srv.open_connections()[0].id)
        srv.start_feed(rate=5000, count=100)
        assert [seq for seq, _ in feed_seqs(fast, 100)] == list(range(1, 101))
        with pytest.raises(TimeoutError):
            slow.recv(0.05)
        assert srv.delay(conn=None) == 2  # off again, for every connection
        # The held frames go out at once, in order.
        assert [seq for seq, _ in feed_seqs(slow, 100)] == list(range(1, 101))


@pytest.mark.parametrize(
    "bad", [(-1.0, 0.0), (0.0, -0.1), (float("inf"), 0.0), (0.0, float("nan"))]
)
def test_delay_is_checked(bad: tuple[float, float]) -> None:
    with FeedServer() as srv, pytest.raises(ValueError):
        srv.delay(*bad)


@pytest.mark.anyio
async def test_jitter_on_the_link_keeps_a_gap_raise_stream_whole() -> None:
    """A multiplexer reading a jittered link sees every seq once, in order, no gap."""
    async with FeedServer(symbols=["BTCUSDT"]) as srv:
        mux = wsmux.Multiplexer(srv.url)
        stream = mux.stream_filter(gaps="raise", maxsize=10_000)
        async with mux:
            (rec,) = await srv.wait_for_connections_async(1)
            srv.delay(fixed=0.002, jitter=0.004, conn=rec.id)
            srv.start_feed(rate=2000, count=300)
            seqs: list[int] = []
            with anyio.fail_after(15):
                while len(seqs) < 300:
                    msg = await stream.receive()
                    if "seq" in msg:
                        seqs.append(msg["seq"])
    assert seqs == list(range(1, 301))
