"""A Binance-style user-data adapter, in the shape of seed 004's BinanceFapiAsyncWs.

Each connection gets a listen key from the REST endpoint; the connection is
rotated, with no gap and no duplicate, on ``listenKeyExpired`` or after a
fixed period. Runs against the embedded FeedServer (whose keys expire every
two seconds) unless ``--url``/``--rest`` point at a real exchange:

    python examples/binance_user_data.py --seconds 5
    BINANCE_API_KEY=... python examples/binance_user_data.py \
        --url wss://fstream.binance.com --rest https://fapi.binance.com
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import urllib.request
from typing import Any

import anyio
import orjson

from wsmux import Multiplexer
from wsmux.testing import FeedServer


class BinanceFapiUserData(Multiplexer):
    """The user-data stream of a futures account."""

    def __init__(self, ws_base: str, rest_base: str, api_key: str = "", period: float = 20 * 3600):
        super().__init__(ws_base, backoff_base=0.2, backoff_cap=5.0)
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
        async with self.stream_filter({"e": "listenKeyExpired"}) as expired:
            with anyio.move_on_after(self.period):
                await expired.receive()

    def _message_id(self, msg: Any) -> Any:
        # Exactly-once across the rotation overlap.
        return (msg.get("e"), msg.get("E"), msg.get("i")) if "i" in msg else None


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
