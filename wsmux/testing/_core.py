"""The feed server's core: the websocket server on its own loop thread.

:class:`FeedCore` owns the thread, the loop, the handshake, every open
connection (a :class:`~._live.Live`: its record, its outgoing queue and
writer), the listen keys and the counters. The feed (:mod:`._feed`) and the
faults (:mod:`._faults`) are separate objects handed the core;
:class:`wsmux.testing.FeedServer` holds all three and reaches the loop
through :meth:`FeedCore.call`.

Only the server thread touches the state, except what other threads read
(records, live connections, counters): that changes under ``waiters.lock``,
followed by ``waiters.notify()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import math
import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import anyio
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response

from ._generator import Frame, encode
from ._keys import API_ENDPOINTS, ListenKeys, json_response, no_key_response
from ._limits import InboundMeter, Limits
from ._live import HandshakeFaults, Live, answer, split_path
from ._records import ConnectionRecord
from ._waiters import Waiters

__all__ = ["FeedCore"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("wsmux.testing")

#: Client frames an exchange counts against a connection's inbound rate.
_INBOUND = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})
_REFUSALS = {
    429: {"code": -1003, "msg": "Too many requests; connection attempts over the limit."},
    418: {"code": -1003, "msg": "Way too many requests; IP banned."},
}


def _ignore(_: object = None) -> None:
    return None


class FeedCore:
    """The server thread: connections, handshakes, listen keys, counters.

    Methods other than :meth:`start`, :meth:`stop`, :meth:`stop_async` and
    :meth:`call` run on the server's loop (or, while it is stopped, on the
    caller's thread: nobody else touches the state then).

    Attributes:
        on_open: Called with each accepted market or user connection.
        on_shutdown: Called first when the server stops.
        http_routes: Plain HTTP endpoints besides the listen keys, by last
            path segment (a websocket upgrade to such a path is not one).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        seed: int,
        listen_key_ttl: float | None,
        close_after_expiry: float | None,
        close_timeout: float,
        queue_size: int,
        serve_options: dict[str, Any],
        limits: dict[str, Any],
    ) -> None:
        self.host, self.port = host, port
        self.close_timeout = close_timeout
        self._close_after_expiry, self._queue_size = close_after_expiry, queue_size
        self._serve_options = serve_options
        self.on_open: Callable[[Live], None] = _ignore
        self.on_shutdown: Callable[[], None] = _ignore
        self.http_routes: dict[str, Callable[[ServerConnection, str, str], Response]] = {}
        # Read by other threads: mutate under waiters.lock (or only by counting), then notify.
        self.waiters = Waiters()
        self.records: list[ConnectionRecord] = []
        self.live: dict[int, Live] = {}
        self.handshake_times: list[float] = []
        self.client_messages: list[Any] = []
        self.feed_tasks: set[asyncio.Task[None]] = set()
        self.schedules: dict[int, asyncio.Task[None]] = {}
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.limits = Limits(self.counts, **limits)
        # Server thread only.
        self.rng = random.Random(seed)  # the feed's garbage and every fault draw from it
        self.handshake_faults = HandshakeFaults()
        self.keys = ListenKeys(listen_key_ttl, self.expire)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: weakref.WeakKeyDictionary[ServerConnection, ConnectionRecord]
        self._pending = weakref.WeakKeyDictionary()
        self._all_conns: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._meters: weakref.WeakKeyDictionary[
            ServerConnection, tuple[InboundMeter, ConnectionRecord]
        ] = weakref.WeakKeyDictionary()
        self._changed = asyncio.Event()
        # Lifecycle.
        self.thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event = asyncio.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.finished = True

    # ------------------------------------------------------------ plumbing

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the server loop and return its result (or raise its error)."""
        loop, thread = self._loop, self.thread
        if loop is None or thread is None or self.finished or thread is threading.current_thread():
            return fn(*args, **kwargs)  # no loop, or already on it: nobody else touches the state
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed in between
            return fn(*args, **kwargs)
        return future.result(timeout=5.0)

    def require_running(self) -> None:
        if self._loop is None or self.finished:
            raise RuntimeError("FeedServer is not running; call start() first")

    def signal_changed(self) -> None:
        """Wake feed tasks waiting for receivers (server thread)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self) -> None:
        """Wait for the next :meth:`signal_changed`."""
        await self._changed.wait()

    def spawn(self, coro: Coroutine[Any, Any, None], *, feed: bool = False) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        with self.waiters.lock:
            (self.feed_tasks if feed else self._tasks).add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with self.waiters.lock:
            self.feed_tasks.discard(task)
            self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("FeedServer task failed", exc_info=exc)
        self.waiters.notify()

    async def later(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        await asyncio.sleep(delay)
        fn(*args)

    def count(self, name: str, lives: list[Live] | None = None) -> int:
        """Count a fault applied (once, or once per connection in ``lives``)."""
        n = 1 if lives is None else len(lives)
        with self.waiters.lock:  # stats() copies the counter from another thread
            self.faults[name] += n
        self.waiters.notify()  # a waiter may be waiting on this very count
        return n

    # ---------------------------------------------------------- the thread

    def start(self) -> None:
        """Start the thread; return once the port is bound (see ``FeedServer.start``)."""
        if self.thread is not None:
            return
        self._started.clear()
        self._start_error, self.finished = None, False
        thread = threading.Thread(target=self._thread_main, name="wsmux-feedserver", daemon=True)
        self.thread = thread
        thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError("FeedServer thread did not start within 10 s")
        if self._start_error is not None:
            thread.join(5.0)
            self.thread = None
            raise self._start_error

    def stop(self) -> None:
        """Stop the loop and join the thread (see ``FeedServer.stop``)."""
        thread = self.thread
        if thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("FeedServer.stop() called from the server thread")
        self._request_stop()
        thread.join(self.close_timeout + 10.0)
        if thread.is_alive():
            raise RuntimeError("FeedServer thread did not stop")
        self.thread = None

    async def stop_async(self) -> None:
        """Like :meth:`stop`, without blocking the caller's event loop."""
        thread = self.thread
        if thread is None:
            return
        self._request_stop()
        with anyio.fail_after(self.close_timeout + 10.0):
            await self.waiters.wait_until_async(lambda: self.finished)
        thread.join(1.0)
        self.thread = None

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:
            logger.exception("FeedServer thread failed")
            if not self._started.is_set():
                self._start_error = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()
                with self.waiters.lock:
                    self._loop, self.finished = None, True
                self._started.set()
                self.waiters.notify()

    async def _main(self) -> None:
        self._stop_event, self._changed = asyncio.Event(), asyncio.Event()
        registry, inbound = self._all_conns, self._inbound

        class TrackedConnection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                registry.add(self)

            def process_event(self, event: Any) -> None:
                super().process_event(event)
                if isinstance(event, WsFrame) and event.opcode in _INBOUND:
                    inbound(self)

        try:
            server = await serve(
                self._handler,
                self.host,
                self.port,
                process_request=self._process_request,
                process_response=self._process_response,
                create_connection=TrackedConnection,
                logger=logging.getLogger("wsmux.testing.server"),
                **self._serve_options,
            )
        except Exception as exc:
            self._start_error = exc
            return
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._started.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._shutdown(server)

    def _request_stop(self) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                logger.debug("FeedServer loop already closed")

    async def _shutdown(self, server: Server) -> None:
        self.on_shutdown()
        with self.waiters.lock:
            tasks = [*self.feed_tasks, *self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        with self.waiters.lock:
            self.schedules.clear()
        self.keys.clear()
        for live in list(self.live.values()):
            if live.rec.half_open:  # it would never read the client's close frame
                live.ws.transport.abort()
        server.close()
        try:
            async with asyncio.timeout(self.close_timeout + 2.0):
                await server.wait_closed()
        except TimeoutError:
            logger.warning("FeedServer: connections did not close in time; aborting them")
            for conn in list(self._all_conns):
                conn.transport.abort()
            async with asyncio.timeout(2.0):
                await server.wait_closed()

    # ----------------------------------------------------------- handshake

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        split = urlsplit(request.path)
        endpoint = split.path.rstrip("/").rsplit("/", 1)[-1]
        if endpoint in API_ENDPOINTS:
            self.counts["http_requests"] += 1
            return self.keys.respond(conn, request.method, split.query)
        upgrade = "upgrade" in request.headers.get("Connection", "").lower()
        if endpoint in self.http_routes and not upgrade:
            self.counts["http_requests"] += 1
            return self.http_routes[endpoint](conn, request.method, split.query)
        now = time.monotonic()
        key, topics = split_path(request.path)
        rec = ConnectionRecord(next(self._ids), request.path, now, key, subscriptions=topics)
        with self.waiters.lock:
            self.records.append(rec)
            self.handshake_times.append(now)
        self._pending[conn] = rec
        self.waiters.notify()
        refusal = self.limits.admit(now)
        if refusal is not None:
            code, wait = refusal
            response = json_response(conn, code, _REFUSALS[code])
            # Rounded up: a client that waits exactly this long is admitted.
            response.headers["Retry-After"] = f"{math.ceil(wait * 1000) / 1000:.3f}"
            return response
        if self.limits.over_topics(set(), topics):
            return json_response(conn, 400, {"code": 2, "msg": "Max number of streams exceeded"})
        self._meters[conn] = (self.limits.meter(), rec)
        armed = self.handshake_faults
        left, seconds = armed.delay
        if left > 0 and seconds > 0:
            armed.delay = (left - 1, seconds)
            self.count("delay_handshake")
            with contextlib.suppress(TimeoutError):  # the delay running out is the normal case
                async with asyncio.timeout(seconds):
                    await self._stop_event.wait()
            if self._stop_event.is_set():
                return conn.respond(503, "Server is shutting down.\n")
        left, status, retry_after = armed.refuse
        if left > 0:
            armed.refuse = (left - 1, status, retry_after)
            self.count("refuse")
            response = conn.respond(status, "Refused by FeedServer.\n")
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
        if key is not None and key not in self.keys:
            return no_key_response(conn, 401)
        return None

    def _process_response(
        self, conn: ServerConnection, request: Request, response: Response
    ) -> None:
        rec = self._pending.get(conn)
        if rec is not None:
            rec.status = response.status_code
            if response.status_code != 101:
                del self._pending[conn]
                self.counts["refused"] += 1
                self.waiters.notify()

    # ---------------------------------------------------------- connection

    async def _handler(self, ws: ServerConnection) -> None:
        rec = self._pending.pop(ws, None)
        if rec is None:
            logger.error("FeedServer: connection opened without a handshake record")
            return
        rec.opened_at = time.monotonic()
        self.counts["accepted"] += 1
        live = Live(ws, rec, self._queue_size)
        if self.handshake_faults.drop_left > 0:
            self.handshake_faults.drop_left -= 1
            self.count("accept_then_drop")
            ws.transport.abort()
            rec.closed_at, rec.close_code = time.monotonic(), 1006
            self.waiters.notify()
            return
        with self.waiters.lock:
            self.live[rec.id] = live
        live.writer = writer = asyncio.create_task(live.write(self.counts, self.rng))
        self.on_open(live)
        self.signal_changed()
        self.waiters.notify()
        try:
            async for raw in ws:
                self._on_message(live, raw)
        except ConnectionClosed as exc:
            logger.debug("FeedServer connection #%d closed: %s", rec.id, exc)
        finally:
            close = ws.protocol.close_rcvd
            rec.close_code = 1006 if close is None else close.code
            rec.close_reason = "" if close is None else close.reason
            rec.closed_at = time.monotonic()
            with self.waiters.lock:
                self.live.pop(rec.id, None)
            for task in (live.feed, writer):
                if task is not None:
                    task.cancel()
            while not live.queue.empty():  # let flushes waiting on this queue end
                live.queue.get_nowait()
                live.queue.task_done()
            self.signal_changed()
            self.waiters.notify()
            await asyncio.wait([writer])

    def _on_message(self, live: Live, raw: str | bytes) -> None:
        msg: Any
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = raw
        with self.waiters.lock:
            live.rec.messages.append(msg)
            self.client_messages.append(msg)
        if isinstance(msg, dict):
            reply = answer(live, msg, self.limits)
            if reply is not None:
                self.enqueue(live, encode(reply))
        self.waiters.notify()

    def _inbound(self, conn: ServerConnection) -> None:
        """Count one inbound message; close a connection over its inbound rate (1008)."""
        entry = self._meters.get(conn)
        if entry is None:
            return
        meter, rec = entry
        over = meter.hit(time.monotonic())
        rec.inbound, rec.max_inbound_per_window = meter.total, meter.peak
        if over:
            del self._meters[conn]  # counted once; the close is on its way
            self.counts["inbound_rate_closes"] += 1
            self.spawn(conn.close(1008, "Too many requests"))
            self.waiters.notify()

    # ------------------------------------------------------------- sending

    def enqueue(self, live: Live, frame: Frame) -> bool:
        """Queue a frame for ``live``; False if muted or its queue is full (counted)."""
        if live.muted:
            return False
        if live.queue.full():
            live.rec.dropped += 1
            self.counts["dropped"] += 1
            return False
        live.put_nowait(frame)
        return True

    def targets(self, conn: int | None) -> list[Live]:
        """Connection ``conn`` if open (None: every open one).

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        if conn is None:
            return list(self.live.values())
        if not 1 <= conn <= len(self.records):
            raise LookupError(f"no connection #{conn}")
        live = self.live.get(conn)
        return [] if live is None else [live]

    def send_one(self, frame: Frame, conn: int | None) -> int:
        lives = self.targets(conn) if conn is not None else list(self.live.values())[-1:]
        if not lives:
            raise LookupError(
                "no open connection" if conn is None else f"connection #{conn} is closed"
            )
        self.enqueue(lives[0], frame)
        return lives[0].rec.id

    def close_one(self, live: Live, code: int, reason: str) -> None:
        """Close ``live`` with a close frame once its queue is written (up to 1 s)."""
        self.spawn(self._close_after_flush(live, code, reason))

    async def _close_after_flush(self, live: Live, code: int, reason: str) -> None:
        with contextlib.suppress(TimeoutError):  # a client that does not read is closed anyway
            async with asyncio.timeout(1.0):
                await live.queue.join()
        await live.ws.close(code, reason)

    def expire(self, key: str | None) -> int:
        """Expire ``key`` (None: every key): tell its connections, maybe close them."""
        if key is None:
            return sum(self.expire(k) for k in list(self.keys))
        if not self.keys.drop(key):
            return 0
        frame = encode({"e": "listenKeyExpired", "E": int(time.time() * 1000), "listenKey": key})
        lives = [lv for lv in self.live.values() if lv.rec.listen_key == key]
        for live in lives:
            self.enqueue(live, frame)
        if self._close_after_expiry is not None and lives:
            reason = "listenKey expired"
            for live in lives:
                self.spawn(self.later(self._close_after_expiry, self.close_one, live, 1000, reason))
        return 1
