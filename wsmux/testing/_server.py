"""The public face of the feed server: :class:`FeedServer`.

It holds three objects and adds the documented controls, argument checks and
waits: the :class:`~._core.FeedCore` (thread, loop, connections, counters,
and the exchange's :class:`~._limits.Limits`), the :class:`~._feed.FeedRunner`
and the :class:`~._faults.Faults`, whose controls it inherits from
:class:`~._controls.FaultControls`. Every control runs on the server loop
through ``FeedCore.call``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from ._controls import FaultControls
from ._core import FeedCore
from ._faults import Faults
from ._feed import FeedRunner
from ._generator import KINDS, FeedSpec, encode, normalize_topic
from ._limits import check_limit
from ._records import ConnectionRecord, FeedServerStats
from ._replay import Replay

__all__ = ["FeedServer"]

logger = logging.getLogger("wsmux.testing")


class FeedServer(FaultControls):
    """A scriptable exchange-like websocket server on 127.0.0.1, for tests.

    Paths: ``/ws/<listenKey>`` opens a user-data stream (unknown key: 401);
    ``POST|PUT|DELETE /listenKey`` (or ``.../userDataStream``) is the tiny
    listen-key HTTP API; ``GET .../depth?symbol=X[&limit=N]`` (such as
    ``/api/v3/depth`` or ``/fapi/v1/depth``) returns the REST depth snapshot
    of the server's own book for ``X`` (see :meth:`book`); any other path is
    a market-data connection. The feed goes to market connections only;
    :meth:`broadcast` reaches every connection.

    Control calls that name a connection take its id (``conn=``); None means
    every open connection. They return how many connections they affected.
    :meth:`open_connections` finds the id of a connection by topic or path.

    Exchange limits, off by default, behave as Binance's do:
    ``max_topics_per_connection`` answers a ``SUBSCRIBE`` that would go over
    it with ``{"error": {"code": 2, "msg": "Max number of streams exceeded"},
    "id": <id>}`` and adds none of its topics; ``connect_limit=(n, seconds)``
    answers handshake attempts over ``n`` per sliding window with 429 and
    ``Retry-After``, and an attempt before that time with 418 (banned for one
    window); ``inbound_rate_limit=(n, seconds)`` closes a connection that
    sends more than ``n`` messages (data frames, pings, pongs) within the
    window with 1008 ``"Too many requests"``. :meth:`stats` counts each, so a
    test can show from the server's own counters that a budget held.
    :meth:`delay` adds latency and jitter to one connection.
    """

    #: The playback of a :meth:`replay` server (progress, duration), else None.
    replaying: Replay | None = None

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        # Feed
        symbols: int | Sequence[str] = 10,
        kinds: Sequence[str] = ("trade", "depth"),
        require_subscribe: bool = False,
        seed: int = 0,
        # Listen keys
        listen_key_ttl: float | None = None,
        close_after_expiry: float | None = None,
        # Websocket
        ping_interval: float | None = None,
        max_size: int | None = 2**22,
        compression: str | None = None,
        close_timeout: float = 1.0,
        queue_size: int = 4096,
        # Exchange limits
        max_topics_per_connection: int | None = None,
        connect_limit: tuple[int, float] | None = None,
        inbound_rate_limit: tuple[int, float] | None = None,
    ) -> None:
        """Configure the server; nothing runs until :meth:`start`.

        Args:
            host: Interface to bind.
            port: TCP port; 0 picks a free one, kept across restarts.
            symbols: A count (``10`` gives ``"SYM0"`` .. ``"SYM9"``) or names.
            kinds: Message kinds of the feed, from ``"trade"`` and ``"depth"``.
            require_subscribe: Send a market connection only the feed messages
                whose topic (``"sym3@trade"``, ``"sym3@depth"``) it subscribed to.
            seed: Seed for the feed and for random faults, so runs repeat.
            listen_key_ttl: Seconds a listen key lives without a keepalive;
                None: keys never expire on their own.
            close_after_expiry: Seconds after a key expires before its
                connections are closed (code 1000); None keeps them open.
            ping_interval: Server keepalive pings; None (default) leaves
                keepalive to the client. Client pings are always answered.
            max_size: Largest message accepted from a client.
            compression: ``"deflate"`` or None (default, like most exchanges).
            close_timeout: Seconds to wait for a client's close frame.
            queue_size: Frames buffered per connection before feed messages
                are dropped for a client that does not read.
            max_topics_per_connection: Streams one connection may carry
                (Binance: 1024, 200 on options); None: no cap.
            connect_limit: ``(attempts, seconds)``: websocket handshake
                attempts allowed within any window of ``seconds``, over all
                connections (Binance: ``(300, 300.0)``); None: no limit.
            inbound_rate_limit: ``(messages, seconds)`` one connection may
                send within any window (Binance spot: ``(5, 1.0)``); None:
                counted (see ``ConnectionRecord.max_inbound_per_window``), never
                enforced.

        Raises:
            ValueError: If ``symbols`` or ``kinds`` is empty or invalid, or a
                limit is out of range.
            TypeError: If a limit has the wrong type.
        """
        if isinstance(symbols, int):
            if symbols < 1:
                raise ValueError("symbols must be at least 1")
            symbols = [f"SYM{i}" for i in range(symbols)]
        if not symbols or not kinds or not set(kinds) <= KINDS:
            raise ValueError(f"need at least one symbol and kinds from {sorted(KINDS)}")
        if max_topics_per_connection is not None:
            if isinstance(max_topics_per_connection, bool) or not isinstance(
                max_topics_per_connection, int
            ):
                raise TypeError("max_topics_per_connection must be an int or None")
            if max_topics_per_connection < 1:
                raise ValueError("max_topics_per_connection must be at least 1")
        limits = {
            "max_topics": max_topics_per_connection,
            "connect_limit": check_limit("connect_limit", connect_limit),
            "inbound_rate_limit": check_limit("inbound_rate_limit", inbound_rate_limit),
        }
        self._core = core = FeedCore(
            host,
            port,
            seed=seed,
            listen_key_ttl=listen_key_ttl,
            close_after_expiry=close_after_expiry,
            close_timeout=close_timeout,
            queue_size=queue_size,
            serve_options={
                "ping_interval": ping_interval,
                "max_size": max_size,
                "compression": compression,
                "close_timeout": close_timeout,
            },
            limits=limits,
        )
        self._feed = FeedRunner(core, symbols, kinds, seed, require_subscribe)
        super().__init__(core, Faults(core))
        core.on_open = self._feed.connection_opened
        core.http_routes["depth"] = self._feed.depth_response
        core.on_shutdown = self._feed.forget

    @classmethod
    def replay(cls, path: str | os.PathLike[str], speed: float | str = 1.0, **options: Any) -> Self:
        """A server that serves a recording (``wsmux record``) as a live feed.

        Frames go to every market connection in order, spacing divided by
        ``speed``; a slow client slows the playback, never loses frames. It
        starts at the first market connection, once per start (:attr:`replaying`).

        Args:
            path: The recording (``.zst``: zstd-compressed).
            speed: 1.0 real time, 10 ten times faster, 0 or ``"max"`` flat out.
            **options: Other :class:`FeedServer` arguments (``host``, ``port``).

        Raises:
            ValueError: A bad ``speed``, or the file is not a wsmux recording.
            OSError: The file cannot be read.
            ImportError: A ``.zst`` file and zstandard is missing.
        """
        server = cls(**options)
        server.replaying = Replay(server._core, path, speed)
        return server

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start serving in a daemon thread; return once the port is bound.

        Idempotent. After :meth:`stop`, starting again binds the same port and
        keeps the records, so clients can test reconnecting to a server that
        went away.

        Returns:
            The server itself.

        Raises:
            OSError: If the port cannot be bound.
            RuntimeError: If the server thread does not come up within 10 s.
        """
        if self._core.thread is not None:
            return self
        self._core.start()
        logger.debug("FeedServer listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Close every connection, stop the loop and join the thread.

        Idempotent. Feed and schedule tasks are cancelled; open connections get
        a close frame (1001), half-open ones are aborted.

        Raises:
            RuntimeError: If called from the server's own thread, or if the
                thread does not end in time.
        """
        self._core.stop()

    async def stop_async(self) -> None:
        """Like :meth:`stop`, without blocking the caller's event loop.

        Raises:
            TimeoutError: If the server thread does not end in time.
        """
        await self._core.stop_async()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._core.thread is not None and not self._core.finished

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            RuntimeError: If the server was never started.
        """
        if self._core.port == 0:
            raise RuntimeError("FeedServer has no port before start()")
        return self._core.port

    @property
    def url(self) -> str:
        """Websocket base URL, ``"ws://127.0.0.1:PORT"``; append a path as needed."""
        return f"ws://{self._core.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """HTTP base URL of the listen-key and depth API, ``"http://127.0.0.1:PORT"``."""
        return f"http://{self._core.host}:{self.port}"

    def __repr__(self) -> str:
        core = self._core
        where = f"{core.host}:{core.port}" if core.port else "unbound"
        state = "running" if self.running else "stopped"
        with core.waiters.lock:
            feed = "on" if core.feed_tasks else "off"
            return (
                f"<FeedServer {where} {state} open={len(core.live)} "
                f"handshakes={len(core.handshake_times)} feed={feed}>"
            )

    # ----------------------------------------------------------------- feed

    def start_feed(
        self,
        *,
        rate: float | None = None,
        count: int | None = None,
        broadcast: bool = True,
        batch: int | None = None,
        garbage_ratio: float = 0.0,
        min_clients: int = 0,
    ) -> None:
        """Start the scripted feed, replacing one already running.

        Broadcast mode sends each message, with its global ``seq``, to every
        market connection (a client with two connections open sees each ``seq``
        on both). Per-connection mode gives every market connection, including
        ones that open later, its own sequence from ``seq`` 1. Silent and
        half-open connections receive nothing.

        Args:
            rate: Messages per second, paced per small batch; None sends as fast
                as the sockets allow (and pauses while nobody would receive).
            count: Messages to send (per connection in per-connection mode);
                None runs until :meth:`stop_feed`.
            broadcast: One shared sequence (True) or one per connection.
            batch: Messages per pacing step; default about 5 ms worth of ``rate``.
            garbage_ratio: Chance, per message, to insert a garbage frame first.
            min_clients: Broadcast mode: wait for this many market connections
                before the first message. Without it, a paced feed runs on the
                clock even while nobody is connected, as an exchange does.

        Raises:
            ValueError: If an argument is out of range.
            RuntimeError: If the server is not running.
        """
        if (rate is not None and rate <= 0) or (count is not None and count < 0):
            raise ValueError("rate must be > 0 and count >= 0")
        if not 0.0 <= garbage_ratio < 1.0 or (batch is not None and batch < 1):
            raise ValueError("garbage_ratio must be in [0, 1) and batch >= 1")
        if batch is None:
            batch = 64 if rate is None else max(1, math.ceil(rate * 0.005))
        spec = FeedSpec(rate, count, broadcast, batch, garbage_ratio, min_clients)
        self._core.require_running()
        self._core.call(self._feed.start, spec)

    def book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        """The server's own order book of ``symbol``, as the REST depth snapshot gives it.

        The broadcast feed's depth diffs are made from this book, which never
        crosses: a client that applies them on top of a snapshot, following
        Binance's rules, holds exactly this book once it has applied the diff
        whose ``u`` is ``lastUpdateId``. (A per-connection feed makes its
        diffs from books of its own, which no snapshot shows.)

        Args:
            symbol: A symbol of the feed.
            limit: Levels per side, best first; None (default) gives them all.

        Returns:
            ``{"lastUpdateId": u, "bids": [[price, qty], ...], "asks": [...]}``,
            prices and quantities as decimal strings, best levels first.

        Raises:
            KeyError: If ``symbol`` is not one of the feed's.
        """
        return self._core.call(self._feed.snapshot, symbol, limit)

    def stop_feed(self) -> None:
        """Stop the feed; messages already queued are still sent."""
        self._core.call(self._feed.stop)

    def wait_feed_done(self, timeout: float = 5.0) -> int:
        """Block until the feed has ended and its queued messages were written.

        Args:
            timeout: Seconds to wait.

        Returns:
            Feed messages produced so far (see :attr:`sent`).

        Raises:
            TimeoutError: If the feed is still running after ``timeout``.
        """
        self.wait_until(lambda: not self._core.feed_tasks, timeout, "feed to finish")
        return self.sent

    async def wait_feed_done_async(self) -> int:
        """Async twin of :meth:`wait_feed_done`; bound it with ``anyio.fail_after``."""
        await self.wait_until_async(lambda: not self._core.feed_tasks)
        return self.sent

    @property
    def sent(self) -> int:
        """Feed messages produced: each broadcast ``seq`` once, per-connection feeds summed."""
        return self._core.counts["feed_messages"]

    @property
    def last_seq(self) -> int:
        """``seq`` of the last broadcast feed message."""
        return self._feed.gen.seq

    def send(self, msg: Any, conn: int | None = None) -> int:
        """Send one message to one connection, after what is already queued.

        Args:
            msg: dict/list (JSON text), str (text frame) or bytes (binary frame).
            conn: Connection id; None picks the newest open connection.

        Returns:
            The id of the connection it was queued for.

        Raises:
            LookupError: If there is no such open connection.
            TypeError: If ``msg`` cannot be encoded.
        """
        return self._core.call(self._core.send_one, encode(msg), conn)

    def broadcast(self, msg: Any) -> int:
        """Send one message to every open connection, market and user streams.

        Args:
            msg: As for :meth:`send`.

        Returns:
            The number of connections it was queued for.

        Raises:
            TypeError: If ``msg`` cannot be encoded.
        """
        frame = encode(msg)
        core = self._core
        return core.call(lambda: sum(core.enqueue(live, frame) for live in core.targets(None)))

    # ---------------------------------------------------------- listen keys

    def create_listen_key(self) -> str:
        """Create a listen key, as ``POST /listenKey`` does.

        Raises:
            RuntimeError: If the server is not running.
        """
        self._core.require_running()
        return self._core.call(self._core.keys.new)

    def expire_listen_key(self, key: str | None = None) -> int:
        """Expire a key now (None: every key), as if its TTL had run out.

        Connections on the key get ``{"e": "listenKeyExpired", ...}``, then are
        closed after ``close_after_expiry`` if set; new handshakes get 401.

        Returns:
            The number of keys expired.
        """
        return self._core.call(self._core.expire, key)

    def send_user_event(self, key: str, msg: Any) -> int:
        """Send an account event to the user-data streams of ``key``.

        Returns:
            The number of connections it was queued for.

        Raises:
            TypeError: If ``msg`` cannot be encoded.
        """
        frame = encode(msg)
        core = self._core
        return core.call(
            lambda: sum(
                core.enqueue(lv, frame) for lv in core.targets(None) if lv.rec.listen_key == key
            )
        )

    @property
    def listen_keys(self) -> list[str]:
        """Keys valid now."""
        return self._core.call(lambda: list(self._core.keys))

    # -------------------------------------------------------------- records

    def stats(self) -> FeedServerStats:
        """Return a snapshot of the counters."""
        core = self._core
        with core.waiters.lock:
            c = core.counts
            return FeedServerStats(
                handshakes=len(core.handshake_times),
                accepted=c["accepted"],
                refused=c["refused"],
                open=len(core.live),
                http_requests=c["http_requests"],
                feed_messages=c["feed_messages"],
                last_seq=self._feed.gen.seq,
                frames_sent=c["frames_sent"],
                garbage_sent=c["garbage_sent"],
                dropped=c["dropped"],
                client_messages=len(core.client_messages),
                faults=dict(core.faults),
                connect_attempts=c["connect_attempts"],
                connect_rate_limited=c["connect_rate_limited"],
                connect_banned=c["connect_banned"],
                connect_window_max=core.limits.connect_window_max,
                over_limit_errors=c["over_limit_errors"],
                inbound_rate_closes=c["inbound_rate_closes"],
                max_inbound_per_window=max(
                    (r.max_inbound_per_window for r in core.records), default=0
                ),
            )

    def records(self) -> list[ConnectionRecord]:
        """Every handshake attempt and connection so far, by id."""
        with self._core.waiters.lock:
            return list(self._core.records)

    def record(self, conn: int) -> ConnectionRecord:
        """The record of connection ``conn``.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        with self._core.waiters.lock:
            if not 1 <= conn <= len(self._core.records):
                raise LookupError(f"no connection #{conn}")
            return self._core.records[conn - 1]

    def open_connections(
        self, *, topic: str | None = None, path: str | None = None
    ) -> list[ConnectionRecord]:
        """Records of the connections open now, oldest first; ``.id`` names one for a control.

        Args:
            topic: Only connections subscribed to this topic (``"sym3@trade"``;
                case of the symbol ignored), by ``SUBSCRIBE`` or in the URL.
            path: Only connections whose request path and query contain this.

        Returns:
            The records, oldest connection first.
        """
        want = None if topic is None else normalize_topic(topic)
        with self._core.waiters.lock:
            return [
                live.rec
                for live in self._core.live.values()
                if (want is None or want in live.topics) and (path is None or path in live.rec.path)
            ]

    def handshake_times(self) -> list[float]:
        """:func:`time.monotonic` times of every handshake attempt, to count attempts per second."""
        with self._core.waiters.lock:
            return list(self._core.handshake_times)

    def client_messages(self, conn: int | None = None) -> list[Any]:
        """Messages received from clients (one connection, or all in arrival order)."""
        if conn is not None:
            return list(self.record(conn).messages)
        with self._core.waiters.lock:
            return list(self._core.client_messages)

    # ---------------------------------------------------------------- waits

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = ""
    ) -> None:
        """Block until ``predicate()`` is true; it is re-checked on every server event.

        The predicate runs under the server's lock: keep it to reading state
        (:meth:`stats`, :meth:`records`, ...), never call a control method in it.

        Raises:
            TimeoutError: If it is still false after ``timeout`` seconds.
        """
        self._core.waiters.wait_until(predicate, timeout, what)

    async def wait_until_async(self, predicate: Callable[[], bool]) -> None:
        """Async twin of :meth:`wait_until`, for asyncio and trio, without polling.

        It waits for as long as it takes: bound it with ``anyio.fail_after``.
        """
        await self._core.waiters.wait_until_async(predicate)

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> list[ConnectionRecord]:
        """Block until at least ``n`` connections are open; return their records.

        Raises:
            TimeoutError: If fewer are open after ``timeout`` seconds.
        """
        self.wait_until(lambda: len(self._core.live) >= n, timeout, f"{n} open connections")
        return self.open_connections()

    async def wait_for_connections_async(self, n: int = 1) -> list[ConnectionRecord]:
        """Async twin of :meth:`wait_for_connections`; bound it with ``anyio.fail_after``."""
        await self.wait_until_async(lambda: len(self._core.live) >= n)
        return self.open_connections()

    def wait_for_messages(
        self, n: int = 1, timeout: float = 5.0, conn: int | None = None
    ) -> list[Any]:
        """Block until clients (or connection ``conn``) sent at least ``n`` messages.

        Returns:
            The messages, as :meth:`client_messages` gives them.

        Raises:
            TimeoutError: If fewer arrived after ``timeout`` seconds.
        """
        self.wait_until(lambda: len(self._messages_of(conn)) >= n, timeout, f"{n} client messages")
        return self.client_messages(conn)

    async def wait_for_messages_async(self, n: int = 1, conn: int | None = None) -> list[Any]:
        """Async twin of :meth:`wait_for_messages`; bound it with ``anyio.fail_after``.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        await self.wait_until_async(lambda: len(self._messages_of(conn)) >= n)
        return self.client_messages(conn)

    def _messages_of(self, conn: int | None) -> list[Any]:
        return self._core.client_messages if conn is None else self.record(conn).messages
