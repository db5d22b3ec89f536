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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self

import anyio
from websockets.exceptions import ProtocolError
from websockets.frames import Close

from ._core import FeedCore
from ._frames import (
    FAULTS,
    KINDS,
    ConnectionRecord,
    FeedServerStats,
    FeedSpec,
    encode,
)

__all__ = ["FAULTS", "ConnectionRecord", "FeedServer", "FeedServerStats"]

logger = logging.getLogger("wsmux.testing")


def _make_waker(event: anyio.Event) -> Callable[[], None]:
    """Return a callable that sets ``event`` from any thread; call it in the waiting loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _trio_waker(event)

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:
            logger.debug("waiter's event loop is closed; wake-up not delivered")

    return wake


def _trio_waker(event: anyio.Event) -> Callable[[], None]:
    try:
        import trio

        token = trio.lowlevel.current_trio_token()
    except (ImportError, RuntimeError) as exc:
        raise RuntimeError("no running asyncio or trio event loop") from exc

    def wake() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            logger.debug("waiter's trio run has finished; wake-up not delivered")

    return wake


class FeedServer(FeedCore):
    """A scriptable exchange-like websocket server on 127.0.0.1, for tests.

    Paths: ``/ws/<listenKey>`` opens a user-data stream (unknown key: 401);
    ``POST|PUT|DELETE /listenKey`` (or ``.../userDataStream``) is the tiny
    listen-key HTTP API; any other path is a market-data connection. The feed
    goes to market connections only; :meth:`broadcast` reaches every connection.

    Control calls that name a connection take its id (``conn=``); None means
    every open connection. They return how many connections they affected.
    """

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

        Raises:
            ValueError: If ``symbols`` or ``kinds`` is empty or invalid.
        """
        if isinstance(symbols, int):
            if symbols < 1:
                raise ValueError("symbols must be at least 1")
            symbols = [f"SYM{i}" for i in range(symbols)]
        if not symbols or not kinds or not set(kinds) <= KINDS:
            raise ValueError(f"need at least one symbol and kinds from {sorted(KINDS)}")
        super().__init__(
            host,
            port,
            tuple(symbols),
            tuple(kinds),
            require_subscribe,
            seed,
            listen_key_ttl,
            close_after_expiry,
            close_timeout,
            queue_size,
            {
                "ping_interval": ping_interval,
                "max_size": max_size,
                "compression": compression,
                "close_timeout": close_timeout,
            },
        )

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
        if self._thread is not None:
            return self
        self._started.clear()
        self._start_error, self._finished = None, False
        thread = threading.Thread(target=self._thread_main, name="wsmux-feedserver", daemon=True)
        self._thread = thread
        thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError("FeedServer thread did not start within 10 s")
        if self._start_error is not None:
            thread.join(5.0)
            self._thread = None
            raise self._start_error
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
        thread = self._thread
        if thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("FeedServer.stop() called from the server thread")
        self._request_stop()
        thread.join(self._close_timeout + 10.0)
        if thread.is_alive():
            raise RuntimeError("FeedServer thread did not stop")
        self._thread = None

    async def stop_async(self) -> None:
        """Like :meth:`stop`, without blocking the caller's event loop.

        Raises:
            TimeoutError: If the server thread does not end in time.
        """
        thread = self._thread
        if thread is None:
            return
        self._request_stop()
        with anyio.fail_after(self._close_timeout + 10.0):
            await self.wait_until_async(lambda: self._finished)
        thread.join(1.0)
        self._thread = None

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
        return self._thread is not None and not self._finished

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            RuntimeError: If the server was never started.
        """
        if self._port == 0:
            raise RuntimeError("FeedServer has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        """Websocket base URL, ``"ws://127.0.0.1:PORT"``; append a path as needed."""
        return f"ws://{self._host}:{self.port}"

    @property
    def http_url(self) -> str:
        """HTTP base URL of the listen-key API, ``"http://127.0.0.1:PORT"``."""
        return f"http://{self._host}:{self.port}"

    def __repr__(self) -> str:
        where = f"{self._host}:{self._port}" if self._port else "unbound"
        state = "running" if self.running else "stopped"
        with self._lock:
            feed = "on" if self._feed_tasks else "off"
            return (
                f"<FeedServer {where} {state} open={len(self._live)} "
                f"handshakes={len(self._handshake_times)} feed={feed}>"
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
        self._require_running()
        self._call(self._start_feed, spec)

    def stop_feed(self) -> None:
        """Stop the feed; messages already queued are still sent."""
        self._call(self._stop_feed)

    def wait_feed_done(self, timeout: float = 5.0) -> int:
        """Block until the feed has ended and its queued messages were written.

        Args:
            timeout: Seconds to wait.

        Returns:
            Feed messages produced so far (see :attr:`sent`).

        Raises:
            TimeoutError: If the feed is still running after ``timeout``.
        """
        self.wait_until(lambda: not self._feed_tasks, timeout, "feed to finish")
        return self.sent

    async def wait_feed_done_async(self) -> int:
        """Async twin of :meth:`wait_feed_done`; bound it with ``anyio.fail_after``."""
        await self.wait_until_async(lambda: not self._feed_tasks)
        return self.sent

    @property
    def sent(self) -> int:
        """Feed messages produced: each broadcast ``seq`` once, per-connection feeds summed."""
        return self._counts["feed_messages"]

    @property
    def last_seq(self) -> int:
        """``seq`` of the last broadcast feed message."""
        return self._gen.seq

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
        return self._call(self._send_one, encode(msg), conn)

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
        return self._call(lambda: sum(self._enqueue(live, frame) for live in self._targets(None)))

    # ---------------------------------------------------------- listen keys

    def create_listen_key(self) -> str:
        """Create a listen key, as ``POST /listenKey`` does.

        Raises:
            RuntimeError: If the server is not running.
        """
        self._require_running()
        return self._call(self._new_key)

    def expire_listen_key(self, key: str | None = None) -> int:
        """Expire a key now (None: every key), as if its TTL had run out.

        Connections on the key get ``{"e": "listenKeyExpired", ...}``, then are
        closed after ``close_after_expiry`` if set; new handshakes get 401.

        Returns:
            The number of keys expired.
        """
        return self._call(self._expire, key)

    def send_user_event(self, key: str, msg: Any) -> int:
        """Send an account event to the user-data streams of ``key``.

        Returns:
            The number of connections it was queued for.

        Raises:
            TypeError: If ``msg`` cannot be encoded.
        """
        frame = encode(msg)
        return self._call(
            lambda: sum(
                self._enqueue(lv, frame) for lv in self._targets(None) if lv.rec.listen_key == key
            )
        )

    @property
    def listen_keys(self) -> list[str]:
        """Keys valid now."""
        return self._call(lambda: list(self._keys))

    # --------------------------------------------------------------- faults

    def close_connections(self, code: int = 1000, reason: str = "", conn: int | None = None) -> int:
        """Close with a close frame, after the frames already queued (up to 1 s).

        Raises:
            ValueError: If ``code`` may not be sent in a close frame.
            LookupError: If ``conn`` was never seen.
        """
        try:
            Close(code, reason).check()
        except ProtocolError as exc:
            raise ValueError(f"close code {code} cannot be sent") from exc
        return self._call(self._do_close, conn, code, reason)

    def drop(self, conn: int | None = None) -> int:
        """Drop the TCP connection without a close frame (``transport.abort()``).

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._call(self._do_drop, conn)

    def silence(self, seconds: float | None = None, conn: int | None = None) -> int:
        """Send no data (pings are still answered) for ``seconds``, or until :meth:`resume`.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._call(self._do_silence, conn, seconds)

    def half_open(self, seconds: float | None = None, conn: int | None = None) -> int:
        """Stop reading the socket: pings go unanswered and no data is sent.

        After ``seconds`` the TCP connection is aborted, as a NAT forgetting it
        would; None keeps it until :meth:`resume` or :meth:`stop`.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._call(self._do_half_open, conn, seconds)

    def resume(self, conn: int | None = None) -> int:
        """Undo :meth:`silence` and :meth:`half_open`.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._call(self._do_resume, conn)

    def send_garbage(
        self,
        kind: Literal["text", "binary", "oversize"] = "text",
        *,
        size: int = 2**20 + 1,
        conn: int | None = None,
    ) -> int:
        """Queue a garbage frame: non-JSON text, random binary, or ``size`` bytes of JSON.

        Raises:
            ValueError: If ``kind`` is unknown or ``size`` too small.
            LookupError: If ``conn`` was never seen.
        """
        return self._call(self._do_garbage, conn, kind, size)

    def refuse(
        self, count: int | None = 1, status: int = 503, retry_after: float | None = None
    ) -> None:
        """Refuse the next ``count`` handshakes (None: all, 0: stop) with an HTTP status.

        Args:
            count: Handshakes to refuse.
            status: HTTP status, such as 503, 429, 401 or 403.
            retry_after: Value of a ``Retry-After`` header, in seconds.

        Raises:
            ValueError: If ``status`` is not an HTTP status a refusal can use.
        """
        if status < 300 or status not in HTTPStatus.__members__.values():
            raise ValueError(f"cannot refuse a handshake with HTTP status {status}")
        left = math.inf if count is None else count
        self._call(self._arm_refuse, left, status, retry_after)

    def delay_handshake(self, seconds: float, count: int | None = None) -> None:
        """Hold the next ``count`` handshakes (None: all) for ``seconds``; 0 turns it off."""
        left = math.inf if count is None else count
        self._call(self._arm_delay, seconds, left)

    def accept_then_drop(self, count: int | None = 1) -> None:
        """Accept the next ``count`` handshakes (None: all, 0: stop), then drop each at once."""
        self._call(self._arm_drop, math.inf if count is None else count)

    def schedule(
        self,
        fault: str | Sequence[str],
        *,
        every: float,
        jitter: float = 0.0,
        count: int | None = None,
        target: int | Literal["all", "random"] = "random",
        **options: Any,
    ) -> int:
        """Apply a fault repeatedly, every ``every`` +/- ``jitter`` seconds.

        Args:
            fault: A name from :data:`FAULTS`, or several to pick one at random
                each time (a random-faults mode for soak tests).
            every: Mean interval in seconds.
            jitter: Uniform jitter added to each interval.
            count: Faults to apply before the schedule ends; None: until cancelled.
            target: A connection id, ``"all"`` open connections, or one at
                ``"random"`` (ticks with no open connection are skipped).
            **options: Passed to each fault that accepts them (``code``,
                ``seconds``, ``kind``, ``status``, ...).

        Returns:
            A schedule id for :meth:`cancel_schedule`.

        Raises:
            ValueError: If a fault or an option is unknown, or ``every <= 0``.
            RuntimeError: If the server is not running.
        """
        names = (fault,) if isinstance(fault, str) else tuple(fault)
        if not names or not set(names) <= FAULTS.keys():
            raise ValueError(f"faults must be from {sorted(FAULTS)}")
        if not set(options) <= set().union(*(FAULTS[n] for n in names)):
            raise ValueError(f"unexpected options for {names}: {sorted(options)}")
        if every <= 0 or jitter < 0:
            raise ValueError("every must be > 0 and jitter >= 0")
        if "seconds" not in options and any("seconds" in FAULTS[n] for n in names):
            options["seconds"] = every  # a silence lasts until about the next tick
        self._require_running()
        return self._call(self._add_schedule, names, every, jitter, count, target, options)

    def chaos(self, *, every: float = 0.5, jitter: float = 0.25, count: int | None = None) -> int:
        """Random faults on random connections: close, drop, silence, garbage, half-open.

        Returns:
            A schedule id for :meth:`cancel_schedule`.
        """
        faults = ("close", "drop", "silence", "garbage", "half_open")
        return self.schedule(
            faults, every=every, jitter=jitter, count=count, code=1011, seconds=2 * every
        )

    def cancel_schedule(self, schedule_id: int | None = None) -> None:
        """Cancel one schedule, or all of them."""
        self._call(self._cancel_schedules, schedule_id)

    def active_schedules(self) -> list[int]:
        """Ids of the schedules still running."""
        with self._lock:
            return list(self._schedules)

    # -------------------------------------------------------------- records

    def stats(self) -> FeedServerStats:
        """Return a snapshot of the counters."""
        with self._lock:
            c = self._counts
            return FeedServerStats(
                handshakes=len(self._handshake_times),
                accepted=c["accepted"],
                refused=c["refused"],
                open=len(self._live),
                http_requests=c["http_requests"],
                feed_messages=c["feed_messages"],
                last_seq=self._gen.seq,
                frames_sent=c["frames_sent"],
                garbage_sent=c["garbage_sent"],
                dropped=c["dropped"],
                client_messages=len(self._client_messages),
                faults=dict(self._faults),
            )

    def records(self) -> list[ConnectionRecord]:
        """Every handshake attempt and connection so far, by id."""
        with self._lock:
            return list(self._records)

    def record(self, conn: int) -> ConnectionRecord:
        """The record of connection ``conn``.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        with self._lock:
            if not 1 <= conn <= len(self._records):
                raise LookupError(f"no connection #{conn}")
            return self._records[conn - 1]

    def open_connections(self) -> list[ConnectionRecord]:
        """Records of the connections open now, oldest first."""
        with self._lock:
            return [live.rec for live in self._live.values()]

    def handshake_times(self) -> list[float]:
        """:func:`time.monotonic` times of every handshake attempt, to count attempts per second."""
        with self._lock:
            return list(self._handshake_times)

    def client_messages(self, conn: int | None = None) -> list[Any]:
        """Messages received from clients (one connection, or all in arrival order)."""
        if conn is not None:
            return list(self.record(conn).messages)
        with self._lock:
            return list(self._client_messages)

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
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"FeedServer: no {what or 'condition'} within {timeout} s")

    async def wait_until_async(self, predicate: Callable[[], bool]) -> None:
        """Async twin of :meth:`wait_until`, for asyncio and trio, without polling.

        It waits for as long as it takes: bound it with ``anyio.fail_after``.
        """
        while True:
            event = anyio.Event()
            wake = _make_waker(event)
            with self._cond:
                if predicate():
                    return
                self._async_waiters.append(wake)
            try:
                await event.wait()
            finally:
                with self._cond, contextlib.suppress(ValueError):
                    self._async_waiters.remove(wake)  # already gone if it was woken

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> list[ConnectionRecord]:
        """Block until at least ``n`` connections are open; return their records.

        Raises:
            TimeoutError: If fewer are open after ``timeout`` seconds.
        """
        self.wait_until(lambda: len(self._live) >= n, timeout, f"{n} open connections")
        return self.open_connections()

    async def wait_for_connections_async(self, n: int = 1) -> list[ConnectionRecord]:
        """Async twin of :meth:`wait_for_connections`; bound it with ``anyio.fail_after``."""
        await self.wait_until_async(lambda: len(self._live) >= n)
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
        return self._client_messages if conn is None else self.record(conn).messages
