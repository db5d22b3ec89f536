"""A real local websocket feed server for tests and demos.

:class:`FeedServer` runs websockets' asyncio server on 127.0.0.1 in a daemon
thread with its own event loop, so one object serves sync, asyncio and trio
tests alike. It plays a small exchange: a scripted feed of Binance-style trades
and depth diffs, subscriptions and requests, listen keys with expiry, and
faults on command or on a schedule. It records every handshake, connection and
client message so tests can check what a client did.

Example::

    from websockets.sync.client import connect

    with FeedServer(symbols=3) as srv, connect(srv.url) as ws:
        srv.wait_for_connections(1)
        srv.start_feed(count=100)
        srv.wait_feed_done()
        srv.drop()  # the client now sees a connection lost without a close frame

Control methods are thread-safe: from another thread they run on the server's
loop and return once applied (a few microseconds). Waits come in pairs: a
blocking one and an ``*_async`` twin for asyncio or trio. In async code, leave
the server with ``async with`` or :meth:`FeedServer.stop_async`: a blocking
:meth:`FeedServer.stop` would keep the caller's loop from answering close frames.

This package owns the server and nothing of the multiplexer: it imports
websockets, anyio and orjson, never another part of wsmux. Start reading at
``_server`` (the public controls), then ``_core`` (the loop thread, handshakes
and connections), ``_feed`` and ``_generator`` (the scripted feed), ``_faults``
(faults and schedules), ``_records`` (what is kept), ``_keys`` and ``_waiters``.
"""

from ._faults import FAULTS
from ._proxy import ConnectProxy, ConnectRequest
from ._records import ConnectionRecord, FeedServerStats
from ._server import FeedServer

__all__ = [
    "FAULTS",
    "ConnectProxy",
    "ConnectRequest",
    "ConnectionRecord",
    "FeedServer",
    "FeedServerStats",
]
