"""An order book from a snapshot plus depth diffs, resynced on ConnectionGap.

Seed 000's advice ("re-fetch a fresh snapshot after reconnecting and
re-synchronise"), done for you: the stream is opened with ``gaps="raise"``,
so an unplanned reconnect surfaces as ``ConnectionGap`` at the exact point
where messages may be missing, and a broken sequence (``pu`` != last ``u``)
triggers the same resync. The book itself (snapshot, diffs, sequence check)
is ``OrderBook`` in ``wsmux/cli/binance.py``, shared with ``wsmux demo``. The
embedded FeedServer drops the connection about every 1.5 s; ``--url`` takes a
Binance-futures-like stream instead:

    python examples/order_book.py --seconds 5
    python examples/order_book.py --url wss://fstream.binance.com/ws/btcusdt@depth \
        --symbol BTCUSDT --rest https://fapi.binance.com
"""

from __future__ import annotations

import argparse
import contextlib

import anyio

from wsmux import ConnectionGap, Multiplexer, StreamLagged
from wsmux.cli.binance import OrderBook
from wsmux.testing import FeedServer


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
