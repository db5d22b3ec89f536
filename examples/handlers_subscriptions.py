"""Handlers, with subscriptions changed while running (seed 003).

The connection stays up while the subscription set changes: every second this
program subscribes to the next set of topics and drops the previous one.
Handlers (a plain function and a coroutine) see whatever matches. The
subscription set is replayed on every reconnect. Against the embedded
FeedServer, which only sends what a connection subscribed to, by default:

    python examples/handlers_subscriptions.py --seconds 5
    python examples/handlers_subscriptions.py --url wss://fstream.binance.com/ws \
        --topics btcusdt@aggTrade ethusdt@aggTrade btcusdt@depth
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
from typing import Any

import anyio
import anyio.lowlevel

from wsmux import Multiplexer
from wsmux.testing import FeedServer

counts: collections.Counter[str] = collections.Counter()


def on_trade(msg: dict[str, Any]) -> None:
    """A plain handler runs inline: keep it quick."""
    counts[f"{msg['s']} trades"] += 1


async def on_depth(msg: dict[str, Any]) -> None:
    """A coroutine handler gets its own task and buffer: it may await."""
    counts[f"{msg['s']} depth"] += 1
    await anyio.lowlevel.checkpoint()


async def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        url, topics = args.url, args.topics
        if url is None:
            srv = stack.enter_context(FeedServer(symbols=3, require_subscribe=True))
            srv.start_feed(rate=600)
            url = srv.url
            topics = topics or ["sym0@trade", "sym1@depth", "sym2@trade", "sym0@depth"]
        mux = Multiplexer(url)
        mux.add_handler(on_trade, [{"e": "trade"}, {"e": "aggTrade"}])

        @mux.on({"e": "depthUpdate"})
        async def depth(msg: dict[str, Any]) -> None:
            await on_depth(msg)

        async with mux:
            with anyio.move_on_after(args.seconds):
                for i in itertools.count():
                    now = topics[i % len(topics)]
                    await mux.subscribe(now)
                    if i:
                        await mux.unsubscribe(topics[(i - 1) % len(topics)])
                    print(f"subscribed to {mux.topics}")
                    await anyio.sleep(1)
                    print("  so far:", dict(counts))
        print("final:", dict(counts))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a websocket URL (default: the embedded FeedServer)")
    parser.add_argument("--topics", nargs="*", help="topics to cycle through")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, parser.parse_args())
