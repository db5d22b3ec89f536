"""Breaking the pool: races, limits and failures a demanding user meets."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from wsmux import Multiplexer, Pool
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
