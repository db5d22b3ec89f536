"""Breaking the pool: races, limits and failures a demanding user meets."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from wsmux import ConnectionGap, FatalConnectError, Multiplexer, NotConnected, Pool
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}


def subscribed(srv: FeedServer, *topics: str) -> bool:
    return any(r.subscriptions == set(topics) for r in srv.open_connections())


async def test_a_swap_on_a_full_connection_unsubscribes_first() -> None:
    """One topic out and one in, at once, on a connection at the server's
    streams cap: the unsubscribe goes first, so the subscribe is not refused
    (and the new topic is not silently lost)."""
    with FeedServer(symbols=4, require_subscribe=True, max_topics_per_connection=2) as srv:
        mux = Multiplexer(srv.url, subscribe_chunk=1, **FAST)
        async with mux:
            await mux.subscribe("sym0@trade", "sym1@trade")
            with anyio.fail_after(10):
                await srv.wait_until_async(lambda: subscribed(srv, "sym0@trade", "sym1@trade"))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(mux.unsubscribe, "sym0@trade")
                    tg.start_soon(mux.subscribe, "sym2@trade")
                await srv.wait_until_async(lambda: subscribed(srv, "sym1@trade", "sym2@trade"))
    assert srv.stats().over_limit_errors == 0


async def test_a_pool_swap_on_a_full_connection_stays_under_the_cap() -> None:
    """The pool frees the room and fills it in one placement: the freed
    topic is unsubscribed before the new one is subscribed, on any backend."""
    with FeedServer(symbols=4, require_subscribe=True, max_topics_per_connection=2) as srv:
        pool = Pool(lambda: Multiplexer(srv.url, subscribe_chunk=1, **FAST), max_topics=2)
        async with pool:
            await pool.subscribe("sym0@trade", "sym1@trade")
            with anyio.fail_after(10):
                await pool.wait_connected()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pool.unsubscribe, "sym0@trade")
                    tg.start_soon(pool.subscribe, "sym2@trade")
                (conn,) = pool.connections
                assert set(conn.topics) == {"sym1@trade", "sym2@trade"}
                await srv.wait_until_async(lambda: subscribed(srv, "sym1@trade", "sym2@trade"))
    assert srv.stats().over_limit_errors == 0


class SeqIds(Multiplexer):
    """The feed's ``seq`` is each message's id."""

    def _message_id(self, msg: Any) -> Any:
        return msg.get("seq") if isinstance(msg, dict) else None


async def test_a_redundant_copy_that_fails_for_good_leaves_the_pool_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One endpoint of a redundant pair answers 401: that copy fails for good,
    said at ERROR and shown in ``connections``; the shard goes on with the
    other copy. Only when the last copy of a shard fails does the pool."""
    with FeedServer(symbols=2, require_subscribe=True) as srv, FeedServer() as bad:
        bad.refuse(count=None, status=401)
        pool = Pool(
            lambda url: SeqIds(url, **FAST), redundancy=2, urls=[srv.url, bad.url + "/k?key=s3cret"]
        )
        stream = pool.stream_filter({"e": "trade"}, gaps="raise")
        gaps = 0
        with anyio.fail_after(10), pytest.raises(FatalConnectError):
            async with pool:
                await pool.subscribe("sym0@trade")
                await pool.wait_connected()
                srv.start_feed(rate=200)
                first = await stream.receive()
                states = sorted(c.state for c in pool.connections)
                assert states == ["failed", "open"] and pool.state == "open"
                (failed,) = [c for c in pool.connections if c.state == "failed"]
                assert failed.error is not None and "401" in failed.error
                await pool.subscribe("sym1@trade")  # the failed copy is not told
                assert pool.stats().connect_errors >= 1
                srv.stop_feed()
                srv.refuse(count=None, status=401)
                srv.drop()  # the last copy: a gap, then the pool fails
                while True:
                    try:
                        await stream.receive()
                    except ConnectionGap:
                        gaps += 1
    assert first["e"] == "trade" and gaps == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("failed for good" in e for e in errors)
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


async def test_a_redundant_pool_starts_on_one_copy_and_exits_during_a_backoff() -> None:
    """One endpoint is down (503, Retry-After 30 s): the pool starts on the
    other copy, delivers, says it is reconnecting, and exit() returns at once
    though a copy is waiting out its Retry-After."""
    with FeedServer(symbols=2, require_subscribe=True) as srv, FeedServer() as down:
        down.refuse(count=None, status=503, retry_after=30)
        pool = Pool(lambda url: SeqIds(url, **FAST), redundancy=2, urls=[srv.url, down.url])
        await pool.subscribe("sym0@trade")
        stream = pool.stream_filter({"e": "trade"})
        with anyio.fail_after(10):
            async with pool:
                srv.start_feed(rate=200)
                await stream.receive()
                await down.wait_until_async(lambda: down.stats().refused >= 1)
                assert pool.state == "reconnecting"
                with pytest.raises(NotConnected):
                    await pool.wait_connected(timeout=0.05)
                start = anyio.current_time()
            assert anyio.current_time() - start < 5


async def test_the_last_topic_of_a_reconnecting_connection_closes_it_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unsubscribing the last topic of a connection that waits out a 30 s
    Retry-After closes it at once; URL secrets appear in no name or log."""
    with FeedServer(symbols=2, require_subscribe=True) as srv:
        url = srv.url.replace("ws://", "ws://user:pw0rd@") + "/ws?listenKey=s3cret"
        pool = Pool(lambda: Multiplexer(url, **FAST), max_topics=1)
        with anyio.fail_after(10):
            async with pool:
                await pool.subscribe("sym0@trade", "sym1@trade")
                await pool.wait_connected()
                srv.refuse(count=None, status=503, retry_after=30)
                srv.drop()
                while pool.stats().connect_errors < 2:
                    await anyio.sleep(0.01)
                await pool.unsubscribe("sym1@trade")
                (left,) = pool.connections
                assert left.topics == ("sym0@trade",) and left.state == "reconnecting"
                text = repr(pool.connections)
    text += " ".join(r.getMessage() for r in caplog.records)
    assert "pw0rd" not in text and "s3cret" not in text
