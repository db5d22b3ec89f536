"""Array frames split into messages: Binance's ``!miniTicker@arr``.

Each ``!miniTicker@arr`` frame is one JSON array holding a ticker for every
symbol that changed. The adapter's ``_parse_raw_data`` returns
``wsmux.Messages(array)``, so each ticker is published as a message of its
own and filters select symbols; ``{"s": {"BTCUSDT", "ETHUSDT"}}`` means any
of the two, at the cost of one index probe per ticker. Offline, the embedded
FeedServer plays the exchange and broadcasts array frames:

    python examples/binance_arrays.py --seconds 5
    python examples/binance_arrays.py --url "wss://fstream.binance.com/ws/!miniTicker@arr"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from typing import Any

import orjson

from wsmux import Messages, Multiplexer
from wsmux.testing import FeedServer

START = {"BTCUSDT": 65000.0, "ETHUSDT": 3400.0, "SOLUSDT": 150.0, "BNBUSDT": 580.0, "XRPUSDT": 0.5}


class MiniTickers(Multiplexer):
    """Publishes each ticker of an array frame as a message of its own."""

    def _parse_raw_data(self, raw: str | bytes) -> Any:
        msg = orjson.loads(raw)
        if isinstance(msg, dict) and "data" in msg:  # combined streams wrap each frame
            msg = msg["data"]
        return Messages(msg) if isinstance(msg, list) else msg


async def exchange(srv: FeedServer) -> None:
    """Broadcast a ``!miniTicker@arr`` frame every 50 ms, as Binance does each second."""
    rng = random.Random(7)
    prices = dict(START)
    while True:
        now = int(time.time() * 1000)
        frame = []
        for symbol in rng.sample(list(prices), rng.randint(2, len(prices))):
            prices[symbol] *= 1 + rng.gauss(0, 0.001)
            frame.append(
                {"e": "24hrMiniTicker", "E": now, "s": symbol, "c": f"{prices[symbol]:.4f}"}
            )
        srv.broadcast(frame)
        await asyncio.sleep(0.05)


async def majors(feed: MiniTickers) -> None:
    last: dict[str, str] = {}
    async for ticker in feed.stream_filter({"s": {"BTCUSDT", "ETHUSDT"}}):
        last[ticker["s"]] = ticker["c"]
        if ticker["s"] == "BTCUSDT":
            print("miniTicker " + "  ".join(f"{s} {c}" for s, c in sorted(last.items())))


async def count_all(feed: MiniTickers, counts: dict[str, int]) -> None:
    async for ticker in feed.stream_filter({"e": "24hrMiniTicker"}):
        counts[ticker["s"]] = counts.get(ticker["s"], 0) + 1


async def main(args: argparse.Namespace) -> None:
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        url = args.url
        tasks = []
        if url is None:
            srv = stack.enter_context(FeedServer())
            url = srv.url
            tasks.append(asyncio.ensure_future(exchange(srv)))
        feed = MiniTickers(url, max_age=23.5 * 3600)  # Binance cuts connections at 24 h
        async with feed:
            consumers = asyncio.gather(majors(feed), count_all(feed, counts), *tasks)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumers, args.seconds)
        stats = feed.stats()
        print(f"{sum(counts.values())} tickers from {stats.messages} frames: {counts}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a !miniTicker@arr stream (default: the embedded FeedServer)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
