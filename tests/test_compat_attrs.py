"""AsyncWebsocketStreamInterface keeps what an adapter set before ``super().__init__()``."""

from __future__ import annotations

import asyncio

from wsmux.compat import AsyncWebsocketStreamInterface
from wsmux.testing import FeedServer


class UrlFirstAdapter(AsyncWebsocketStreamInterface):
    """Sets its URL and its own fields, then calls the base constructor."""

    def __init__(self, server: FeedServer) -> None:
        self.url = server.url
        self.venue = "feed"
        super().__init__(backoff_base=0.02, backoff_cap=0.1, close_timeout=0.5)


def test_url_set_before_super_init_is_connected_to() -> None:
    """Fails on the old code: the base constructor reset ``self.url`` to None
    and the connection failed with "no url"."""

    async def main() -> None:
        with FeedServer() as srv:
            ws = UrlFirstAdapter(srv)
            assert ws.url == srv.url
            assert ws.venue == "feed"
            stream = ws.stream_filter([{"e": "ping"}])
            await asyncio.wait_for(ws.wait_enter_handing_ws(), 3)
            await asyncio.wait_for(srv.wait_for_connections_async(1), 3)
            srv.broadcast({"e": "ping"})
            assert await asyncio.wait_for(stream.__anext__(), 3) == {"e": "ping"}
            assert "127.0.0.1" in repr(ws)
            await asyncio.wait_for(ws.exit(), 3)

    asyncio.run(main())


def test_an_explicit_url_wins_over_a_preset_one() -> None:
    class Both(AsyncWebsocketStreamInterface):
        def __init__(self, url: str) -> None:
            self.url = "ws://preset.invalid"
            super().__init__(url, close_timeout=0.5)

    async def main() -> None:
        with FeedServer() as srv:
            ws = Both(srv.url)
            assert ws.url == srv.url
            await asyncio.wait_for(ws.wait_enter_handing_ws(), 3)
            await asyncio.wait_for(ws.exit(), 3)

    asyncio.run(main())
