"""An order book from a snapshot plus depth diffs, resynced on ConnectionGap.

Seed 000's advice ("re-fetch a fresh snapshot after reconnecting and
re-synchronise"), done for you: the stream is opened with ``gaps="raise"``,
so an unplanned reconnect surfaces as ``ConnectionGap`` at the exact point
where messages may be missing, and a broken sequence (``pu`` != last ``u``)
triggers the same resync. The embedded FeedServer drops the connection about
every 1.5 s; ``--url`` takes a Binance-futures-like stream instead:

    python examples/order_book.py --seconds 5
    python examples/order_book.py --url wss://fstream.binance.com/ws/btcusdt@depth \
        --symbol BTCUSDT --rest https://fapi.binance.com
"""

from __future__ import annotations

import argparse
import contextlib
import urllib.request
from typing import Any

import anyio
import orjson

from wsmux import ConnectionGap, Multiplexer, StreamLagged
from wsmux.testing import FeedServer


class OrderBook:
    """Price levels of one symbol, kept in sequence."""

    def __init__(self, symbol: str, rest: str | None) -> None:
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
        bid = max(self.bids, default=0.0)
        ask = min(self.asks, default=0.0)
        return f"{self.symbol} bid {bid:.2f} ask {ask:.2f} levels {len(self.bids)}/{len(self.asks)}"


async def keep(book: OrderBook, mux: Multiplexer) -> None:
    diffs = mux.stream_filter({"e": "depthUpdate", "s": book.symbol}, gaps="raise")
    await book.resync()
    while True:
        try:
            async for diff in diffs:
                if not book.apply(diff):
                    print(f"{book.symbol}: sequence broken at u={diff['u']}, resyncing")
                    await book.resync()
            return
        except ConnectionGap:
            print(f"{book.symbol}: connection gap, resyncing")
            await book.resync()
        except StreamLagged as exc:
            print(f"{book.symbol}: {exc.count} diffs lost, resyncing")
            await book.resync()


async def main(args: argparse.Namespace) -> None:
    srv = None
    if args.url is None:
        srv = FeedServer(symbols=[args.symbol, "ETHUSDT"], kinds=("depth",)).start()
        srv.start_feed(rate=500)
        srv.schedule("drop", every=1.5, jitter=0.5)
    try:
        mux = Multiplexer(args.url or srv.url if srv else args.url, backoff_base=0.05)
        book = OrderBook(args.symbol, args.rest)
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(keep, book, mux)
            with anyio.move_on_after(args.seconds):
                while True:
                    await anyio.sleep(0.7)
                    print(book.top(), "resyncs", book.resyncs)
            tg.cancel_scope.cancel()
        print(f"reconnects: {mux.stats().reconnects}, resyncs: {book.resyncs}")
    finally:
        if srv is not None:
            await srv.stop_async()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a depth stream URL (default: the embedded FeedServer)")
    parser.add_argument("--rest", help="REST base for snapshots, e.g. https://fapi.binance.com")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, parser.parse_args())
