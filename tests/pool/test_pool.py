"""The pool against FeedServer: placement, closing, shared limits, failure."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from wsmux import FatalConnectError, Multiplexer, MultiplexerClosed, Pool, State
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}


def topics(symbols: int) -> list[str]:
    return [f"sym{i}@{kind}" for i in range(symbols) for kind in ("trade", "depth")]


async def test_3000_topics_over_3_connections_at_1024() -> None:
    """Binance's cap of 1,024 streams per connection, enforced by the server:
    3,000 topics take three connections, no subscribe is refused, and every
    message of the feed reaches the pool's one hub."""
    with FeedServer(symbols=1500, require_subscribe=True, max_topics_per_connection=1024) as srv:
        pool = Pool(lambda: Multiplexer(srv.url, subscribe_chunk=512, **FAST), max_topics=1024)
        seen: set[int] = set()
        async with pool:
            everything = pool.stream_filter({"e": lambda e: e in ("trade", "depthUpdate")})
            await pool.subscribe(*topics(1500))
            with anyio.fail_after(20):
                await pool.wait_connected()
                srv.start_feed(count=3000)
                while len(seen) < 3000:
                    seen.add((await everything.receive())["seq"])
            conns = pool.connections
            stats = pool.stats()
            server = srv.stats()
    assert [len(c.topics) for c in conns] == [1024, 1024, 952]
    assert [c.state for c in conns] == ["open"] * 3
    assert sorted({t for c in conns for t in c.topics}) == sorted(topics(1500))
    assert {r.subscriptions.__len__() for r in srv.records()} == {1024, 952}
    assert server.over_limit_errors == 0 and server.accepted == 3
    assert seen == set(range(1, 3001))
    assert stats.connects == 3 and stats.messages >= 3000 and stats.name == "pool"
    assert pool.state == State.CLOSED


async def test_unsubscribing_empties_and_closes_a_connection() -> None:
    with FeedServer(symbols=4, require_subscribe=True) as srv:
        pool = Pool(lambda: Multiplexer(srv.url, **FAST), max_topics=4)
        async with pool:
            await pool.subscribe(*topics(4))  # 8 topics: two connections
            with anyio.fail_after(10):
                await pool.wait_connected()
                await srv.wait_until_async(lambda: srv.stats().open == 2)
            first, second = pool.connections
            assert first.topics == tuple(topics(2)) and second.topics == tuple(topics(4)[4:])
            await pool.unsubscribe(*second.topics[:3])
            assert len(pool.connections) == 2  # one topic left there: it stays
            await pool.unsubscribe(second.topics[3])
            (only,) = pool.connections
            assert only.id == first.id
            with anyio.fail_after(10):
                await srv.wait_until_async(lambda: srv.stats().open == 1)
            (rec,) = srv.open_connections()
            assert rec.subscriptions == set(first.topics)
            # A topic wanted again goes where there is room: a new connection.
            await pool.subscribe("sym3@trade")
            assert [c.id for c in pool.connections] == [first.id, 3]
            assert pool.stats().connects >= 2  # the closed connection's counters stay
        with anyio.fail_after(10):
            await srv.wait_until_async(lambda: srv.stats().open == 0)


async def test_stream_topics_open_and_close_connections() -> None:
    """Demand-driven topics: a stream's ``topics=`` are placed while it is open."""
    with FeedServer(symbols=2, require_subscribe=True) as srv:
        pool = Pool(lambda: Multiplexer(srv.url, **FAST), max_topics=1)
        async with pool:
            assert pool.connections == [] and pool.state == State.OPEN
            stream = pool.stream_filter({"s": "SYM1"}, topics=["sym1@trade", "sym1@depth"])
            with anyio.fail_after(10):
                await srv.wait_until_async(lambda: srv.stats().open == 2)
                await pool.wait_connected()
                srv.start_feed(count=200)
                msg = await stream.receive()
            assert msg["s"] == "SYM1" and pool.topics == ["sym1@trade", "sym1@depth"]
            await stream.aclose()
            assert pool.topics == []
            with anyio.fail_after(10):
                await srv.wait_until_async(lambda: srv.stats().open == 0)
                while pool.connections:  # closing, until their tasks are done
                    await anyio.sleep(0.01)


async def test_dropping_every_connection_reconnects_within_both_budgets() -> None:
    """Every connection dropped at once: all come back, and the server's own
    counters show that neither the connection-attempt budget nor the inbound
    message rate per connection was ever exceeded. The budget is small enough
    that the reconnections must wait for it."""
    with FeedServer(
        symbols=8, require_subscribe=True, connect_limit=(4, 1.5), inbound_rate_limit=(5, 1.0)
    ) as srv:
        pool = Pool(
            lambda: Multiplexer(srv.url, subscribe_chunk=1, **FAST),
            max_topics=5,
            connect_budget=(4, 1.5),
            send_rate=(5, 1.0),
        )
        async with pool:
            await pool.subscribe(*topics(8)[:15])  # three connections, 5 subscribes each
            with anyio.fail_after(20):
                await pool.wait_connected()
                srv.start_feed(rate=500)
                assert srv.drop() == 3
                while pool.stats().reconnects < 3:
                    await anyio.sleep(0.02)
                await pool.wait_connected()
                await srv.wait_until_async(lambda: srv.stats().open == 3)
            stats = pool.stats()
            budget = pool.budget
            srv.stop_feed()
    server = srv.stats()
    assert stats.disconnects == 3 and stats.reconnects == 3
    assert server.connect_rate_limited == 0 and server.connect_banned == 0
    assert server.connect_window_max <= 4 and server.handshakes == 6
    assert server.inbound_rate_closes == 0 and server.max_inbound_per_window <= 5
    assert budget is not None and budget.waited >= 1  # the budget did hold some back
    # Every connection was told its topics again, one subscribe message each.
    subscribes = [m for m in srv.client_messages() if m.get("method") == "SUBSCRIBE"]
    assert len(subscribes) == 30


async def test_a_connection_that_fails_for_good_fails_the_pool() -> None:
    with FeedServer() as srv:
        srv.refuse(count=None, status=401)
        pool = Pool(lambda: Multiplexer(srv.url, **FAST))
        stream = pool.stream_filter()
        await pool.subscribe("sym0@trade")  # before start: placed when it starts
        with anyio.fail_after(10), pytest.raises(FatalConnectError):
            async with pool:
                pass
        assert pool.state == State.FAILED
        with anyio.fail_after(5), pytest.raises(FatalConnectError):
            await stream.receive()
        with pytest.raises(MultiplexerClosed):
            await pool.subscribe("sym1@trade")


async def test_requests_and_sends_go_through_one_connection() -> None:
    with FeedServer() as srv:
        pool = Pool(lambda: Multiplexer(srv.url, **FAST), max_topics=1)
        async with pool:
            await pool.subscribe("sym0@trade", "sym1@trade")
            with anyio.fail_after(10):
                await pool.wait_connected()
                reply = await pool.request({"method": "LIST_SUBSCRIPTIONS"})
                await pool.send({"method": "PING"})
                await srv.wait_for_messages_async(4)
            # Ids are the pool's: the subscribes had 1 and 2, the request 3.
            assert reply == {"result": ["sym0@trade"], "id": 3}
        pool2 = Pool(lambda: Multiplexer(srv.url, **FAST))
        async with pool2:
            with pytest.raises(Exception, match="no connection"):
                await pool2.send("x")


async def test_a_factory_that_raises_leaves_nothing_placed() -> None:
    with FeedServer() as srv:
        made = 0

        def factory() -> Multiplexer:
            nonlocal made
            made += 1
            if made == 2:
                raise RuntimeError("no more")
            return Multiplexer(srv.url, **FAST)

        pool = Pool(factory, max_topics=1)
        async with pool:
            await pool.subscribe("sym0@trade")
            with pytest.raises(RuntimeError, match="no more"):
                await pool.subscribe("sym1@trade")
            assert [c.topics for c in pool.connections] == [("sym0@trade",)]
            await pool.subscribe("sym2@trade")  # places sym1 and sym2 again
            assert sorted(t for c in pool.connections for t in c.topics) == [
                "sym0@trade",
                "sym1@trade",
                "sym2@trade",
            ]


async def test_exit_from_an_async_handler_of_the_pool() -> None:
    with FeedServer() as srv:
        pool = Pool(lambda: Multiplexer(srv.url, **FAST))
        seen: list[Any] = []

        async def handler(msg: Any) -> None:
            seen.append(msg)
            await pool.exit()

        pool.add_handler(handler, {"e": "trade"})
        everything = pool.stream_filter()
        with anyio.fail_after(10):
            async with pool:
                await pool.subscribe("sym0@trade")
                await pool.wait_connected()
                srv.start_feed(rate=200)
                async for _ in everything:  # ends once the handler has exited the pool
                    pass
        assert seen and pool.state == State.CLOSED


async def test_run_in_a_task_until_exit() -> None:
    with FeedServer() as srv:
        pool = Pool(lambda: Multiplexer(srv.url, **FAST))
        await pool.subscribe("sym0@trade")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.run)
            with anyio.fail_after(10):
                while pool.state != State.OPEN:
                    await anyio.sleep(0.01)
                assert [c.state for c in pool.connections] == ["open"]
                await pool.exit()
        assert pool.state == State.CLOSED
        await pool.exit()  # idempotent
        with pytest.raises(MultiplexerClosed):
            await pool.subscribe("sym1@trade")


class Replaying(Multiplexer):
    """Says when it builds the subscribe messages of a new connection."""

    def __init__(self, url: str) -> None:
        super().__init__(url, **FAST)
        self.replaying = anyio.Event()

    def _subscribe_messages(self, topics: list[str]) -> list[Any]:
        self.replaying.set()
        return super()._subscribe_messages(topics)


async def test_a_topic_subscribed_while_connecting_reaches_the_connection() -> None:
    """Subscribed after the new connection's replay began, before it is live
    (what a pool does to a connection that is reconnecting): sent once live."""
    with FeedServer() as srv:
        mux = Replaying(srv.url)
        await mux.subscribe("sym0@trade")

        async def late() -> None:
            await mux.replaying.wait()
            await mux.subscribe("sym1@trade")  # not live yet: remembered only

        async with anyio.create_task_group() as tg:
            tg.start_soon(late)
            async with mux:
                with anyio.fail_after(10):
                    await srv.wait_until_async(
                        lambda: any(
                            r.subscriptions == {"sym0@trade", "sym1@trade"}
                            for r in srv.open_connections()
                        )
                    )


async def test_metrics_show_each_connection_of_a_pool() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from wsmux.metrics import WsmuxCollector

    with FeedServer(require_subscribe=True) as srv:
        pool = Pool(lambda: Multiplexer(srv.url, **FAST), max_topics=1, name="md")
        async with pool:
            await pool.subscribe("sym0@trade", "sym1@trade")
            with anyio.fail_after(10):
                await pool.wait_connected()
            registry = CollectorRegistry()
            registry.register(WsmuxCollector(pool))
            text = generate_latest(registry).decode()
    names = [c.name for c in pool.connections]
    assert len(names) == 2 and names[0].endswith("#1") and names[1].endswith("#2")
    for name in names:
        assert f'wsmux_connection_up{{connection="{name}",mux="md"}}' in text
