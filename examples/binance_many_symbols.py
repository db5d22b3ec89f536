"""Every symbol of a venue through a pool: 2,500 symbols, trade and depth, 5,000 topics.

Binance carries at most 1,024 streams on one connection, allows 300
connection attempts per 5 minutes per IP and 5 incoming messages per second
per connection (subscribes and pings count), and cuts every connection at
24 hours. A ``wsmux.Pool`` places the 5,000 topics on five connections,
shares one connection-attempt budget between them, paces each connection's
subscribes, and rotates each one (gap-free) before the 24-hour cut. All five
feed one hub: the streams below do not know there is more than one socket.

Offline, the embedded FeedServer plays a venue of 2,500 symbols that enforces
those limits, so going over any of them would show:

    python examples/binance_many_symbols.py --seconds 5
    python examples/binance_many_symbols.py --redundancy 2 --seconds 5
    python examples/binance_many_symbols.py --url wss://stream.binance.com:9443/ws \\
        --symbols btcusdt,ethusdt,solusdt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import Counter
from collections.abc import Hashable
from typing import Any

from wsmux import Multiplexer, Pool
from wsmux.testing import FeedServer

#: Binance's limits, as the pool and the offline venue apply them.
STREAMS_PER_CONNECTION = 1024  # 200 on options
CONNECT_BUDGET = (300, 300.0)  # attempts per 5 minutes per IP
SEND_RATE = (5, 1.0)  # spot; 10 per second on futures


class BinanceStreams(Multiplexer):
    """Market streams on ``/ws``; ids make redundant copies mergeable."""

    def _message_id(self, msg: Any) -> Hashable | None:
        if not isinstance(msg, dict):
            return None
        if msg.get("e") == "trade":
            return ("trade", msg.get("s"), msg.get("t"))
        if msg.get("e") == "depthUpdate":
            return ("depth", msg.get("s"), msg.get("u"))
        return None  # subscription replies: one per connection, all delivered


def adapter(url: str) -> BinanceStreams:
    return BinanceStreams(url, max_age=23.5 * 3600, subscribe_chunk=256)


async def report(pool: Pool, counts: Counter[str], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        conns = pool.connections
        per = " ".join(f"#{c.id}:{len(c.topics)}/{c.state}" for c in conns)
        print(f"{counts['trade']} trades, {counts['depthUpdate']} depth updates; {per}")


async def main(args: argparse.Namespace) -> None:
    counts: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            srv = stack.enter_context(
                FeedServer(
                    symbols=args.symbols_count,
                    require_subscribe=True,
                    max_topics_per_connection=STREAMS_PER_CONNECTION,
                    connect_limit=CONNECT_BUDGET,
                    inbound_rate_limit=SEND_RATE,
                    queue_size=100_000,
                )
            )
            url = srv.url + "/ws"
            symbols = [f"sym{i}" for i in range(args.symbols_count)]
        else:
            srv = None
            symbols = [s.strip().lower() for s in args.symbols.split(",") if s.strip()]
        urls = [url] * args.redundancy
        pool = Pool(
            adapter,
            urls=urls,
            redundancy=args.redundancy,
            max_topics=STREAMS_PER_CONNECTION,
            connect_budget=CONNECT_BUDGET,
            send_rate=SEND_RATE,
        )
        pool.add_handler(lambda msg: counts.update([msg["e"]]), {"e": {"trade", "depthUpdate"}})
        topics = [f"{s}@{kind}" for s in symbols for kind in ("trade", "depth")]
        async with pool:
            await pool.subscribe(*topics)
            await pool.wait_connected(timeout=30)
            conns = pool.connections
            print(f"{len(topics)} topics on {len(conns)} connections:", end="")
            print("".join(f" #{c.id} {len(c.topics)}" for c in conns))
            if srv is not None:
                srv.start_feed(rate=2000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(report(pool, counts, 1.0), args.seconds)
        stats = pool.stats()
        print(f"{stats.messages} frames, {stats.duplicates} duplicate copies dropped")
        if srv is not None:
            server = srv.stats()
            print(
                f"venue: {server.over_limit_errors} over-limit subscribes,"
                f" {server.connect_rate_limited} attempts refused with 429,"
                f" at most {server.max_inbound_per_window} messages/s from one connection"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Binance market stream URL (default: the embedded venue)")
    parser.add_argument("--symbols", default="btcusdt,ethusdt", help="with --url: symbols")
    parser.add_argument("--symbols-count", type=int, default=2500, help="offline: symbols")
    parser.add_argument("--redundancy", type=int, default=1, help="connections per shard")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
