"""A Binance-style user-data adapter and an order book kept from depth diffs.

The one copy of both: ``wsmux demo`` runs them against the embedded
:class:`~wsmux.testing.FeedServer`, and ``examples/binance_user_data.py`` and
``examples/order_book.py`` import them from here. They are examples of how to
write an adapter on :class:`wsmux.Multiplexer`, not a supported exchange client.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import anyio
import orjson

from .. import Multiplexer

__all__ = ["BinanceFapiUserData", "OrderBook"]


class BinanceFapiUserData(Multiplexer):
    """The user-data stream of a futures account, as seed 004's BinanceFapiAsyncWs.

    Each connection gets a fresh listen key from the REST endpoint; the
    connection is rotated, with no gap and no duplicate, on
    ``listenKeyExpired`` or after ``period`` seconds, whichever comes first.
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
            **options: Multiplexer options (default backoff 0.2 s, capped at 5 s).
        """
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


class OrderBook:
    """Price levels of one symbol, kept in sequence (``pu`` must equal the last ``u``).

    Attributes:
        bids: Price to quantity.
        asks: Price to quantity.
        last_u: ``u`` of the last diff applied; None until the first one.
        resyncs: How many times :meth:`resync` ran.
    """

    def __init__(self, symbol: str, rest: str | None = None) -> None:
        """Create an empty book.

        Args:
            symbol: The symbol, as in the diffs' ``"s"``.
            rest: REST base for snapshots; None starts from the next diff.
        """
        self.symbol, self.rest = symbol, rest
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.last_u: int | None = None
        self.snapshot_id = 0
        self.resyncs = 0

    def _fetch_snapshot(self) -> dict[str, Any]:
        url = f"{self.rest}/fapi/v1/depth?symbol={self.symbol}&limit=1000"
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(orjson.loads(response.read()))

    async def resync(self) -> None:
        """Start over: from a REST snapshot, or (no ``rest``) from the next diff."""
        self.resyncs += 1
        self.bids.clear()
        self.asks.clear()
        self.last_u = None
        if self.rest is None:
            self.snapshot_id = 0  # the embedded exchange has no snapshot: start at the next diff
            return
        snap = await anyio.to_thread.run_sync(self._fetch_snapshot)
        self.snapshot_id = snap["lastUpdateId"]
        self.bids = {float(p): float(q) for p, q in snap["bids"]}
        self.asks = {float(p): float(q) for p, q in snap["asks"]}

    def apply(self, diff: dict[str, Any]) -> bool:
        """Apply a diff; False when the sequence broke and a resync is needed."""
        if diff["u"] < self.snapshot_id:
            return True  # older than the snapshot
        if self.last_u is not None and diff["pu"] != self.last_u:
            return False
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = float(qty)
        self.last_u = diff["u"]
        return True

    def top(self) -> str:
        """The best bid and ask, and the number of levels, as one line."""
        bid = max(self.bids, default=0.0)
        ask = min(self.asks, default=0.0)
        return f"{self.symbol} bid {bid:.2f} ask {ask:.2f} levels {len(self.bids)}/{len(self.asks)}"
