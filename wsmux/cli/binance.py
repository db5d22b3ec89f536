"""A Binance-style user-data adapter and Binance order books.

``wsmux demo`` runs them against the embedded :class:`~wsmux.testing.FeedServer`,
and ``examples/binance_user_data.py`` and ``examples/order_book.py`` import
them from here. The order book is :class:`wsmux.OrderBook` (the one copy of
the book and its sync rules) with Binance's REST snapshot plugged in. They
are examples of how to write an adapter on :class:`wsmux.Multiplexer`, not a
supported exchange client.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import anyio
import orjson

from .. import BinanceFuturesRule, BinanceSpotRule, Multiplexer
from ..book import BookSource, SnapshotFetcher
from ..book import OrderBook as BookBase

__all__ = ["BinanceFapiUserData", "OrderBook", "depth_fetcher"]


class BinanceFapiUserData(Multiplexer):
    """The user-data stream of a futures account, as seed 004's BinanceFapiAsyncWs.

    Each connection gets a fresh listen key from the REST endpoint; the
    connection is rotated, with no gap and no duplicate, on
    ``listenKeyExpired`` or after ``period`` seconds, whichever comes first,
    and in any case before Binance's own 24-hour cut-off (``max_age``).
    """

    def __init__(
        self,
        ws_base: str,
        rest_base: str,
        api_key: str = "",
        period: float = 20 * 3600,
        **options: Any,
    ) -> None:
        """Create the adapter; nothing connects until it is started.

        Args:
            ws_base: Websocket base URL, such as ``wss://fstream.binance.com``.
            rest_base: REST base URL, such as ``https://fapi.binance.com``.
            api_key: Sent as ``X-MBX-APIKEY`` when asking for a listen key.
            period: Seconds before a connection is rotated anyway.
            **options: Multiplexer options (default backoff 0.2 s, capped at
                5 s, and ``max_age`` 23.5 h: Binance closes every connection
                at 24 h).
        """
        options.setdefault("max_age", 23.5 * 3600)
        options.setdefault("backoff_base", 0.2)
        options.setdefault("backoff_cap", 5.0)
        super().__init__(ws_base, **options)
        self.ws_base, self.rest_base, self.api_key, self.period = (
            ws_base,
            rest_base,
            api_key,
            period,
        )

    def _listen_key(self) -> str:
        request = urllib.request.Request(f"{self.rest_base}/fapi/v1/listenKey", method="POST")
        request.add_header("X-MBX-APIKEY", self.api_key)
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(orjson.loads(response.read())["listenKey"])

    async def _create_ws(self) -> Any:
        key = await anyio.to_thread.run_sync(self._listen_key)
        self.url = f"{self.ws_base}/ws/{key}"
        return await super()._create_ws()

    async def _when2create_new_ws(self) -> None:
        # Rotate every `period` seconds, or when the server says the key expired.
        async with self.stream_filter({"e": "listenKeyExpired"}, maxsize=4) as expired:
            with anyio.move_on_after(self.period):
                await expired.receive()

    def _message_id(self, msg: Any) -> Any:
        # Exactly-once across the rotation overlap.
        if isinstance(msg, dict) and "i" in msg:
            return (msg.get("e"), msg.get("E"), msg["i"])
        return None


def depth_fetcher(rest: str, *, futures: bool = False, limit: int = 1000) -> SnapshotFetcher:
    """A ``fetch_snapshot`` for Binance's REST depth endpoint.

    Args:
        rest: REST base URL, such as ``https://api.binance.com`` (spot) or
            ``https://fapi.binance.com`` (futures); FeedServer's ``http_url``
            serves both paths.
        futures: Use ``/fapi/v1/depth`` rather than ``/api/v3/depth``.
        limit: Levels per side.

    Returns:
        A coroutine function ``fetch(symbol)``; the blocking HTTP request runs
        in a worker thread, and its errors (``OSError``) are retried by the book.
    """
    path = "/fapi/v1/depth" if futures else "/api/v3/depth"

    def get(symbol: str) -> dict[str, Any]:
        url = f"{rest}{path}?symbol={symbol}&limit={limit}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(orjson.loads(response.read()))

    async def fetch(symbol: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(get, symbol)

    return fetch


class OrderBook(BookBase):
    """A Binance order book: :class:`wsmux.OrderBook` with Binance's REST snapshot and rule."""

    def __init__(
        self, source: BookSource, symbol: str, rest: str, *, futures: bool = False, **options: Any
    ) -> None:
        """Create the book; run it with ``async with book:`` or ``await book.run()``.

        Args:
            source: The multiplexer carrying ``depthUpdate`` diffs of ``symbol``.
            symbol: The symbol, such as ``"BTCUSDT"``.
            rest: REST base URL for the snapshots (see :func:`depth_fetcher`).
            futures: USD-M futures (``pu`` chaining) rather than spot (``U``/``u``).
            **options: More :class:`wsmux.OrderBook` options.
        """
        rule = BinanceFuturesRule() if futures else BinanceSpotRule()
        fetch = depth_fetcher(rest, futures=futures)
        super().__init__(source, symbol, fetch, rule=rule, **options)

    def top(self) -> str:
        """The best bid and ask, and the number of levels, as one line."""
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return f"{self.symbol} out of sync"
        levels = f"{len(self.bids())}/{len(self.asks())}"
        return f"{self.symbol} bid {bid[0]} ask {ask[0]} levels {levels}"
