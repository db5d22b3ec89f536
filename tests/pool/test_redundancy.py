"""``redundancy=2`` against FeedServer: two copies of each shard, merged exactly once."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import anyio
import pytest

from wsmux import ConnectionGap, Multiplexer, Pool, PoolConnection
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}
TOPICS = [f"sym{i}@{kind}" for i in range(8) for kind in ("trade", "depth")]


class SeqIds(Multiplexer):
    """The feed's ``seq`` is each message's id."""

    def _message_id(self, msg: Any) -> Any:
        return msg.get("seq") if isinstance(msg, dict) else None


def redundant_pool(srv: FeedServer) -> Pool:
    """Two shards of 8 topics, each on two connections: path /a (copy 0) and /b (copy 1)."""
    return Pool(
        lambda url: SeqIds(url, **FAST),
        max_topics=8,
        redundancy=2,
        urls=[srv.url + "/a", srv.url + "/b"],
    )


def member(pool: Pool, shard: int, copy: int) -> PoolConnection:
    return next(c for c in pool.connections if c.shard == shard and c.copy == copy)


def server_id(srv: FeedServer, pool: Pool, shard: int, copy: int) -> int:
    """The server's id of a pool connection, found by its topics and its path."""
    topic = member(pool, shard, copy).topics[0]
    (rec,) = srv.open_connections(topic=topic, path="/ab"[copy + 1])
    return rec.id


async def test_twenty_kills_of_single_copies_lose_nothing_and_repeat_nothing() -> None:
    """A 1 kHz feed over two shards of two copies; 20 times, one copy chosen
    at random is dropped, and the next kill waits until it is back and
    delivering. No ConnectionGap, every seq exactly once."""
    rng = random.Random(11)
    with FeedServer(symbols=8, require_subscribe=True, queue_size=100_000) as srv:
        pool = redundant_pool(srv)
        stream = pool.stream_filter({"e": lambda e: e != "x"}, gaps="raise", maxsize=100_000)
        seqs: list[int] = []

        async def consume() -> None:
            async for msg in stream:  # a ConnectionGap here fails the test
                if "seq" in msg:
                    seqs.append(msg["seq"])

        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await pool.subscribe(*TOPICS)
            with anyio.fail_after(30):
                await pool.wait_connected()
                assert len(pool.connections) == 4
                srv.start_feed(rate=1000)
                for _ in range(20):
                    shard, copy = rng.choice([1, 2]), rng.choice([0, 1])
                    before = member(pool, shard, copy).stats.reconnects
                    srv.drop(conn=server_id(srv, pool, shard, copy))
                    # Back, re-subscribed, and delivering again: it covers its shard.
                    while True:
                        now = member(pool, shard, copy)
                        if now.stats.reconnects > before and now.state == "open":
                            break
                        await anyio.sleep(0.005)
                    delivered = now.stats.messages
                    while member(pool, shard, copy).stats.messages < delivered + 5:
                        await anyio.sleep(0.005)
                srv.stop_feed()
                last = await srv.wait_feed_done_async()
                while len(seqs) < last:
                    await anyio.sleep(0.01)
            stats = pool.stats()
            dropped = sum(c.copies_dropped for c in pool.connections)
            tg.cancel_scope.cancel()
    repeated = [seq for seq, n in Counter(seqs).items() if n > 1]
    assert not repeated
    assert sorted(seqs) == list(range(1, last + 1))  # none missing
    assert stats.disconnects == 20 and stats.reconnects == 20
    assert dropped > last // 2  # the copies really were both there, and dropped
    assert srv.stats().dropped == 0


async def test_losing_both_copies_of_a_shard_is_exactly_one_gap() -> None:
    with FeedServer(symbols=8, require_subscribe=True, queue_size=100_000) as srv:
        pool = redundant_pool(srv)
        stream = pool.stream_filter(gaps="raise", maxsize=100_000)
        gaps = 0
        seqs: list[int] = []

        async def consume() -> None:
            nonlocal gaps
            while True:
                try:
                    msg = await stream.receive()
                except ConnectionGap:
                    gaps += 1
                    continue
                except anyio.EndOfStream:
                    return
                if "seq" in msg:
                    seqs.append(msg["seq"])

        async with pool, anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await pool.subscribe(*TOPICS)
            with anyio.fail_after(20):
                await pool.wait_connected()
                srv.start_feed(rate=1000)
                while len(seqs) < 100:
                    await anyio.sleep(0.005)
                a, b = server_id(srv, pool, 1, 0), server_id(srv, pool, 1, 1)
                srv.drop(conn=a)
                srv.drop(conn=b)
                while pool.stats().reconnects < 2:
                    await anyio.sleep(0.005)
                await pool.wait_connected()
                # Both copies of shard 1 deliver again; no further gap comes.
                mark = len(seqs)
                while len(seqs) < mark + 500:
                    await anyio.sleep(0.005)
                srv.stop_feed()
            stats = pool.stats()
            tg.cancel_scope.cancel()
    assert gaps == 1
    assert stats.disconnects == 2 and stats.reconnects == 2
    assert len(seqs) == len(set(seqs))  # still no duplicate


async def test_copies_connect_to_their_own_urls() -> None:
    with FeedServer(symbols=8) as srv:
        pool = redundant_pool(srv)
        async with pool:
            await pool.subscribe(*TOPICS[:3])
            with anyio.fail_after(10):
                await pool.wait_connected()
            conns = pool.connections
        paths = sorted(r.path for r in srv.records())
    assert [(c.shard, c.copy) for c in conns] == [(1, 0), (1, 1)]
    assert paths == ["/a", "/b"]


async def test_a_slow_blocking_reader_gets_every_message_once() -> None:
    """Backpressure through a redundant pair: a ``block`` stream of 8 read
    slowly holds both copies' readers; nothing is lost, nothing repeated."""
    with FeedServer(symbols=8, require_subscribe=True, queue_size=100_000) as srv:
        pool = redundant_pool(srv)
        stream = pool.stream_filter({"e": lambda e: e != "x"}, overflow="block", maxsize=8)
        seqs: list[int] = []
        async with pool:
            await pool.subscribe(*TOPICS)
            with anyio.fail_after(20):
                await pool.wait_connected()
                srv.start_feed(count=400)
                while len(seqs) < 400:
                    msg = await stream.receive()
                    if "seq" in msg:
                        seqs.append(msg["seq"])
                    if len(seqs) % 50 == 0:
                        await anyio.sleep(0.01)  # a slow reader, now and then
            stats = pool.stats()
    assert sorted(seqs) == list(range(1, 401))
    assert stats.drops == 0 and stats.disconnects == 0
