"""Typed messages with ``listen(Model)``, many coroutines on one socket.

``_parse_raw_data`` turns each frame into a dataclass (seeds 000 and 001
yield typed models); ``listen(Trade)`` is a stream of Trade objects, and
filters match attributes. Several coroutines run with ``asyncio.gather``
over one websocket connection:

    python examples/typed_messages.py --seconds 5
    python examples/typed_messages.py --url "wss://fstream.binance.com/stream?streams=btcusdt@trade/btcusdt@depth"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import orjson

from wsmux import Multiplexer
from wsmux.testing import FeedServer


@dataclass(frozen=True, slots=True)
class Trade:
    s: str
    p: float
    q: float
    t: int


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    s: str
    u: int
    pu: int
    bids: int
    asks: int


class TypedFeed(Multiplexer):
    """Parses Binance trades and depth diffs into dataclasses."""

    def _parse_raw_data(self, raw: str | bytes) -> Any:  # a plain function is fine too
        msg = orjson.loads(raw)
        msg = msg.get("data", msg)  # combined streams wrap each message
        if msg.get("e") == "trade":
            return Trade(msg["s"], float(msg["p"]), float(msg["q"]), msg["t"])
        if msg.get("e") == "depthUpdate":
            return DepthUpdate(msg["s"], msg["u"], msg["pu"], len(msg["b"]), len(msg["a"]))
        return None  # anything else is skipped


async def vwap(feed: TypedFeed, symbol: str) -> None:
    notional = volume = 0.0
    async for trade in feed.listen(Trade, {"s": symbol}):
        notional += trade.p * trade.q
        volume += trade.q
        if trade.t % 50 == 0:
            print(f"{symbol} vwap {notional / volume:.2f} over {volume:.1f}")


async def big_trades(feed: TypedFeed) -> None:
    async for trade in feed.listen(Trade, {"q": lambda q: q > 1.95}):
        print(f"big trade {trade.s} {trade.q} @ {trade.p}")


async def depth_rate(feed: TypedFeed) -> None:
    n = 0
    async for update in feed.listen(DepthUpdate):
        n += 1
        if n % 200 == 0:
            print(f"{n} depth updates, last {update.s} u={update.u}")


async def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            srv = stack.enter_context(FeedServer(symbols=["BTCUSDT", "ETHUSDT"]))
            srv.start_feed(rate=1000)
            url = srv.url
        feed = TypedFeed(url)
        async with feed:
            consumers = asyncio.gather(
                vwap(feed, "BTCUSDT"), vwap(feed, "ETHUSDT"), big_trades(feed), depth_rate(feed)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumers, args.seconds)
        print(f"{feed.stats().messages} messages on {feed.stats().connects} connection(s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a trade/depth stream (default: the embedded FeedServer)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
