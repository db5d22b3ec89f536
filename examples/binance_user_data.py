"""A Binance-style user-data adapter, in the shape of seed 004's BinanceFapiAsyncWs.

Each connection gets a listen key from the REST endpoint; the connection is
rotated, with no gap and no duplicate, on ``listenKeyExpired`` or after a
fixed period. The adapter itself (a listen key per connection, rotation on
expiry, exactly-once by event id) is ``BinanceFapiUserData`` in
``wsmux/cli/binance.py``, where ``wsmux demo`` uses it too. Runs against the
embedded FeedServer (whose keys expire every two seconds) unless
``--url``/``--rest`` point at a real exchange:

    python examples/binance_user_data.py --seconds 5
    BINANCE_API_KEY=... python examples/binance_user_data.py \
        --url wss://fstream.binance.com --rest https://fapi.binance.com
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import anyio

from wsmux.cli.binance import BinanceFapiUserData
from wsmux.testing import FeedServer


async def simulate_account(srv: FeedServer) -> None:
    """Order updates for whichever listen keys are valid, ten a second."""
    i = 0
    while True:
        await anyio.sleep(0.1)
        for key in srv.listen_keys:
            i += 1
            srv.send_user_event(
                key,
                {
                    "e": "ORDER_TRADE_UPDATE",
                    "E": int(time.time() * 1000),
                    "i": i,
                    "o": {"s": "BTCUSDT", "X": "FILLED"},
                },
            )


async def main(args: argparse.Namespace) -> None:
    async with FeedServer(listen_key_ttl=2.0) if args.url is None else _nothing() as srv:
        ws_base = args.url or srv.url
        rest = args.rest or (srv.http_url if srv else "")
        ws = BinanceFapiUserData(ws_base, rest, os.environ.get("BINANCE_API_KEY", ""))
        orders = ws.stream_filter({"e": "ORDER_TRADE_UPDATE"})
        async with ws, anyio.create_task_group() as tg:
            if srv is not None:
                tg.start_soon(simulate_account, srv)
            with anyio.move_on_after(args.seconds):
                async for event in orders:
                    print("order", event["o"]["s"], event["o"]["X"], "event", event.get("i"))
            tg.cancel_scope.cancel()
        print(f"rotations: {ws.stats().rotations}, reconnects: {ws.stats().reconnects}")


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="websocket base, e.g. wss://fstream.binance.com")
    parser.add_argument("--rest", help="REST base, e.g. https://fapi.binance.com")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, parser.parse_args())
