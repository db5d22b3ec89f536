"""An order book you can trust: a REST snapshot plus depth diffs, resynced when needed.

``wsmux.OrderBook`` (here with Binance's REST snapshot, from
``wsmux/cli/binance.py``) fetches the snapshot only once connected, buffers
the diffs meanwhile, places them on it by Binance's rules, and starts over on
a connection gap, a lost diff, a broken sequence or a book that would cross.
The embedded FeedServer serves its own book's snapshot and diffs, and drops
the connection about every 1.5 s; ``--url`` and ``--rest`` take Binance:

    python examples/order_book.py --seconds 5
    python examples/order_book.py --url wss://stream.binance.com:9443/ws/btcusdt@depth \\
        --rest https://api.binance.com --symbol BTCUSDT
    python examples/order_book.py --url wss://fstream.binance.com/ws/btcusdt@depth \\
        --rest https://fapi.binance.com --symbol BTCUSDT --futures
"""

from __future__ import annotations

import argparse
import contextlib

import anyio

from wsmux import Multiplexer
from wsmux.cli.binance import OrderBook
from wsmux.testing import FeedServer


async def main(args: argparse.Namespace) -> None:
    srv = None
    if args.url is None:
        srv = FeedServer(symbols=[args.symbol, "ETHUSDT"], kinds=("depth",)).start()
        srv.start_feed(rate=500)
        srv.schedule("drop", every=1.5, jitter=0.5)
    try:
        mux = Multiplexer(srv.url if srv else args.url, backoff_base=0.05)
        rest = srv.http_url if srv else args.rest
        book = OrderBook(mux, args.symbol, rest, futures=args.futures)
        async with mux, book:
            with anyio.move_on_after(args.seconds):
                while True:
                    await anyio.sleep(0.7)
                    print(book.top(), "resyncs", book.statistics().resyncs)
        print(f"reconnects: {mux.stats().reconnects}, book: {book.statistics()}")
    finally:
        if srv is not None:
            await srv.stop_async()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a depth stream URL (default: the embedded FeedServer)")
    parser.add_argument("--rest", help="REST base for snapshots, e.g. https://api.binance.com")
    parser.add_argument("--futures", action="store_true", help="USD-M futures rules (pu)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after S s")
    arguments = parser.parse_args()
    if arguments.url and not arguments.rest:
        parser.error("--url needs --rest")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, arguments)
