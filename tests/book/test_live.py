"""OrderBook against a real FeedServer: its REST snapshot, its diffs, its faults."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import anyio
import pytest

from wsmux import BinanceFuturesRule, BookSync, Multiplexer, OrderBook, SyncRule
from wsmux.testing import FeedServer

FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "close_timeout": 0.5}


class Snapshots:
    """The REST snapshot over real HTTP, noting the multiplexer's state at each fetch."""

    def __init__(self, srv: FeedServer, path: str = "/api/v3/depth") -> None:
        self.url = f"{srv.http_url}{path}"
        self.mux: Multiplexer | None = None
        self.states: list[str] = []

    def _get(self, symbol: str) -> dict[str, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.url}?symbol={symbol}", timeout=2) as response:
            return dict(json.loads(response.read()))

    async def __call__(self, symbol: str) -> Mapping[str, Any]:
        if self.mux is not None:
            self.states.append(str(self.mux.state))
        return await anyio.to_thread.run_sync(self._get, symbol)


def levels(side: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in side]


def same_as_server(book: BookSync, server: dict[str, Any]) -> bool:
    return (
        book.last_update_id == server["lastUpdateId"]
        and book.bids() == levels(server["bids"])
        and book.asks() == levels(server["asks"])
    )


class Watch:
    """Checks the book each time it changes: never crossed, at any point."""

    def __init__(self) -> None:
        self.updates = 0
        self.crossed: list[Any] = []

    def __call__(self, book: BookSync) -> None:
        self.updates += 1
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or bid[0] >= ask[0]:
            self.crossed.append((book.last_update_id, bid, ask))


async def settle(srv: FeedServer, book: OrderBook) -> dict[str, Any]:
    """Stop the feed, then wait until the book has the server's last update."""
    srv.stop_feed()
    server = srv.book(book.symbol)
    while book.last_update_id != server["lastUpdateId"]:
        await anyio.sleep(0.002)
    return server


@pytest.mark.anyio
@pytest.mark.parametrize("rule", [None, BinanceFuturesRule()], ids=["spot", "futures"])
async def test_book_syncs_with_the_servers_book(rule: SyncRule | None) -> None:
    async with FeedServer(symbols=["BTCUSDT", "ETHUSDT"], kinds=("depth",)) as srv:
        srv.start_feed(rate=5000)
        mux = Multiplexer(srv.url, **FAST)
        fetch, watch = Snapshots(srv, "/fapi/v1/depth"), Watch()
        book = OrderBook(mux, "BTCUSDT", fetch, rule=rule, on_update=watch)
        async with mux, book:
            with anyio.fail_after(5):
                await book.wait_synced()
                while book.statistics().applied < 50:
                    await anyio.sleep(0.005)
                server = await settle(srv, book)
        assert same_as_server(book, server) and not watch.crossed
        s = book.statistics()
        assert s.snapshots >= 1 and s.resyncs == 0 and s.applied >= 50


@pytest.mark.slow
@pytest.mark.anyio
async def test_twenty_reconnects_each_end_with_the_servers_book() -> None:
    """Issue 14's check: after every forced reconnect during a fast depth feed, the
    book resyncs (only once connected again) and equals the server's own book;
    it is never seen crossed."""
    async with FeedServer(symbols=["BTCUSDT", "ETHUSDT"], kinds=("depth",)) as srv:
        mux = Multiplexer(srv.url, **FAST)
        fetch, watch = Snapshots(srv), Watch()
        fetch.mux = mux
        book = OrderBook(mux, "BTCUSDT", fetch, retry_delay=0.01, on_update=watch)
        async with mux, book:
            for _ in range(20):
                srv.start_feed(rate=20_000)
                with anyio.fail_after(5):
                    await book.wait_synced()
                    applied = book.statistics().applied
                    while book.statistics().applied < applied + 20:
                        await anyio.sleep(0.002)
                    resyncs = book.statistics().resyncs
                    srv.drop()
                    while book.statistics().resyncs == resyncs:
                        await anyio.sleep(0.002)
                    await book.wait_synced()
                    applied = book.statistics().applied
                    while book.statistics().applied < applied + 20:
                        await anyio.sleep(0.002)
                    server = await settle(srv, book)
                assert same_as_server(book, server)
            reconnects = mux.stats().reconnects
        assert reconnects >= 20
        assert not watch.crossed and watch.updates > 400
        assert set(fetch.states) == {"open"}  # never fetched while disconnected
        s = book.statistics()
        assert s.resyncs >= 20 and s.snapshots >= 21


@pytest.mark.anyio
async def test_a_failing_fetch_ends_the_book_with_its_error() -> None:
    async def fetch(symbol: str) -> Mapping[str, Any]:
        raise ValueError(f"no snapshot for {symbol}")

    async with FeedServer(symbols=["BTCUSDT"], kinds=("depth",)) as srv:
        mux = Multiplexer(srv.url, **FAST)
        async with mux:
            with anyio.fail_after(5), pytest.raises(ValueError, match="no snapshot for BTCUSDT"):
                async with OrderBook(mux, "BTCUSDT", fetch) as book:
                    await book.wait_synced()


@pytest.mark.anyio
async def test_run_returns_when_the_multiplexer_exits() -> None:
    async with FeedServer(symbols=["BTCUSDT"], kinds=("depth",)) as srv:
        srv.start_feed(rate=2000)
        mux = Multiplexer(srv.url, **FAST)
        book = OrderBook(mux, "BTCUSDT", Snapshots(srv))
        with anyio.fail_after(5):
            async with mux, anyio.create_task_group() as tg:
                tg.start_soon(book.run)
                await book.wait_synced()
                await mux.exit()
        assert book.statistics().snapshots >= 1
