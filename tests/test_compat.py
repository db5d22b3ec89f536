"""The AsyncWebsocketStreamInterface API (seed 004), as an adapter would use it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import websockets

from wsmux.compat import AsyncWebsocketStreamInterface
from wsmux.testing import FeedServer


class BinanceLikeAsyncWs(AsyncWebsocketStreamInterface):
    """Written as in seed 004, only the import changed."""

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        super().__init__(backoff_base=0.02, backoff_cap=0.1, close_timeout=0.5)

    async def _create_ws(self) -> Any:
        key = self.server.create_listen_key()
        return await websockets.connect(f"{self.server.url}/ws/{key}")

    async def _when2create_new_ws(self) -> None:
        listen_key_expired_stream = self.stream_filter([{"e": "listenKeyExpired"}])

        async def read_listen_key_expired_stream(stream: Any) -> None:
            async for _news in stream:
                try:
                    return
                finally:
                    asyncio.create_task(stream.close())  # noqa: RUF006 - as in seed 004

        task = asyncio.create_task(read_listen_key_expired_stream(listen_key_expired_stream))
        sleep = asyncio.create_task(asyncio.sleep(20 * 3600))
        await asyncio.wait([task, sleep], return_when="FIRST_COMPLETED")
        task.cancel()
        sleep.cancel()

    async def _parse_raw_data(self, raw_data: Any) -> Any:
        return orjson.loads(raw_data)


def test_seed_004_adapter_runs_unchanged() -> None:
    async def main() -> None:
        with FeedServer() as srv:
            ws = BinanceLikeAsyncWs(srv)
            await asyncio.wait_for(ws.wait_enter_handing_ws(), 3)
            assert ws.present_ws is not None
            orders = ws.stream_filter([{"e": "ORDER_TRADE_UPDATE"}])
            seen: list[Any] = []
            ws.add_handler(seen.append)
            key = srv.listen_keys[-1]
            srv.send_user_event(key, {"e": "ORDER_TRADE_UPDATE", "i": 1})
            msg = await asyncio.wait_for(orders.__anext__(), 3)
            assert msg["i"] == 1
            srv.expire_listen_key(key)
            for _ in range(300):
                if ws.stats().rotations:
                    break
                await asyncio.sleep(0.01)
            assert ws.stats().rotations == 1
            srv.send_user_event(srv.listen_keys[-1], {"e": "ORDER_TRADE_UPDATE", "i": 2})
            msg = await asyncio.wait_for(orders.__anext__(), 3)
            assert msg["i"] == 2
            await ws.send({"method": "PING", "id": 7})
            await orders.close()
            await asyncio.wait_for(ws.exit(), 3)
            assert ws.state == "closed"
            assert [m.get("e") for m in seen][:2] == ["ORDER_TRADE_UPDATE", "listenKeyExpired"]

    asyncio.run(main())


def test_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="running asyncio loop"):
        AsyncWebsocketStreamInterface("ws://127.0.0.1:1")
