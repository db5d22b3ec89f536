"""Private parts of :mod:`wsmux.testing`: the server core in its own thread.

:class:`FeedCore` runs the websocket server on a private event loop; the
public :class:`wsmux.testing.FeedServer` wraps it with documented controls.
The frames and records live in :mod:`wsmux.testing._frames`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import random
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ._frames import (
    _API_ENDPOINTS,
    _CONN_FAULTS,
    _NO_KEY,
    FAULTS,
    ConnectionRecord,
    FeedGenerator,
    FeedSpec,
    Frame,
    encode,
    garbage_frame,
    normalize_topic,
)

__all__ = ["FeedCore"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("wsmux.testing")


class _Live:
    """Server-side state of one open connection (server thread only)."""

    __slots__ = ("feed", "queue", "rec", "topics", "writer", "ws")

    def __init__(self, ws: ServerConnection, rec: ConnectionRecord, queue_size: int) -> None:
        self.ws = ws
        self.rec = rec
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(queue_size)
        self.topics = {normalize_topic(t) for t in rec.subscriptions}
        self.writer: asyncio.Task[None] | None = None
        self.feed: asyncio.Task[None] | None = None

    @property
    def muted(self) -> bool:
        return self.rec.silent or self.rec.half_open or self.rec.closed_at is not None


def _split_path(path: str) -> tuple[str | None, set[str]]:
    """Return the listen key of ``/ws/<key>``, or the topics a market path names."""
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    topics = {t for v in parse_qs(parts.query).get("streams", []) for t in v.split("/") if t}
    if len(segments) == 2 and segments[0] == "ws":
        if "@" not in segments[1]:
            return segments[1], set()
        topics.add(segments[1])
    return None, topics


def _json_response(conn: ServerConnection, status: int, body: Any) -> Response:
    response = conn.respond(status, orjson.dumps(body).decode())
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


class FeedCore:
    """The server-thread half of ``FeedServer``: state, handlers, feed, faults.

    Methods named ``_do_*``, ``_arm_*`` and the handlers run on the server's
    loop only; the public half reaches them through :meth:`_call`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        symbols: tuple[str, ...],
        kinds: tuple[str, ...],
        require_subscribe: bool,
        seed: int,
        listen_key_ttl: float | None,
        close_after_expiry: float | None,
        close_timeout: float,
        queue_size: int,
        serve_options: dict[str, Any],
    ) -> None:
        self._host, self._port = host, port
        self._symbols, self._kinds, self._seed = symbols, kinds, seed
        self._require_subscribe = require_subscribe
        self._ttl, self._close_after_expiry = listen_key_ttl, close_after_expiry
        self._close_timeout, self._queue_size = close_timeout, queue_size
        self._serve_options = serve_options
        # Read by other threads: mutate under _lock (or only by counting), then _notify().
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._async_waiters: list[Callable[[], None]] = []
        self._records: list[ConnectionRecord] = []
        self._live: dict[int, _Live] = {}
        self._handshake_times: list[float] = []
        self._client_messages: list[Any] = []
        self._feed_tasks: set[asyncio.Task[None]] = set()
        self._schedules: dict[int, asyncio.Task[None]] = {}
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._gen = FeedGenerator(symbols, kinds, seed)
        # Server thread only.
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)
        self._feed_spec: FeedSpec | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._schedule_ids = itertools.count(1)
        self._keys: dict[str, asyncio.TimerHandle | None] = {}
        self._pending: weakref.WeakKeyDictionary[ServerConnection, ConnectionRecord]
        self._pending = weakref.WeakKeyDictionary()
        self._all_conns: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._refuse: tuple[float, int, float | None] = (0, 503, None)
        self._delay: tuple[float, float] = (0, 0.0)
        self._drop_left: float = 0
        self._changed = asyncio.Event()
        # Lifecycle.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event = asyncio.Event()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._finished = True

    # ------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the server loop and return its result (or raise its error)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._finished or thread is threading.current_thread():
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

    def _require_running(self) -> None:
        if self._loop is None or self._finished:
            raise RuntimeError("FeedServer is not running; call start() first")

    def _notify(self) -> None:
        """Wake every waiter, sync and async, to re-check its condition."""
        with self._cond:
            self._cond.notify_all()
            wakers, self._async_waiters = self._async_waiters, []
        for wake in wakers:
            wake()

    def _signal_changed(self) -> None:
        """Wake feed tasks waiting for receivers (server thread)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Coroutine[Any, Any, None], *, feed: bool = False) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        with self._lock:
            (self._feed_tasks if feed else self._tasks).add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._feed_tasks.discard(task)
            self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("FeedServer task failed", exc_info=exc)
        self._notify()

    async def _later(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        await asyncio.sleep(delay)
        fn(*args)

    # ---------------------------------------------------------- the thread

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
                with self._lock:
                    self._loop, self._finished = None, True
                self._started.set()
                self._notify()

    async def _main(self) -> None:
        self._stop_event, self._changed = asyncio.Event(), asyncio.Event()
        registry = self._all_conns

        class TrackedConnection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                registry.add(self)

        try:
            server = await serve(
                self._handler,
                self._host,
                self._port,
                process_request=self._process_request,
                process_response=self._process_response,
                create_connection=TrackedConnection,
                logger=logging.getLogger("wsmux.testing.server"),
                **self._serve_options,
            )
        except Exception as exc:
            self._start_error = exc
            return
        self._port = server.sockets[0].getsockname()[1]
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
        self._feed_spec = None
        with self._lock:
            tasks = [*self._feed_tasks, *self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        with self._lock:
            self._schedules.clear()
        for handle in self._keys.values():
            if handle is not None:
                handle.cancel()
        self._keys.clear()
        for live in list(self._live.values()):
            if live.rec.half_open:  # it would never read the client's close frame
                live.ws.transport.abort()
        server.close()
        try:
            async with asyncio.timeout(self._close_timeout + 2.0):
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
        if split.path.rstrip("/").rsplit("/", 1)[-1] in _API_ENDPOINTS:
            self._counts["http_requests"] += 1
            return self._http(conn, request.method, split.query)
        now = time.monotonic()
        key, topics = _split_path(request.path)
        rec = ConnectionRecord(next(self._ids), request.path, now, key, subscriptions=topics)
        with self._lock:
            self._records.append(rec)
            self._handshake_times.append(now)
        self._pending[conn] = rec
        self._notify()
        left, seconds = self._delay
        if left > 0 and seconds > 0:
            self._delay = (left - 1, seconds)
            self._count("delay_handshake")
            with contextlib.suppress(TimeoutError):  # the delay running out is the normal case
                async with asyncio.timeout(seconds):
                    await self._stop_event.wait()
            if self._stop_event.is_set():
                return conn.respond(503, "Server is shutting down.\n")
        left, status, retry_after = self._refuse
        if left > 0:
            self._refuse = (left - 1, status, retry_after)
            self._count("refuse")
            response = conn.respond(status, "Refused by FeedServer.\n")
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
        if key is not None and key not in self._keys:
            return _json_response(conn, 401, orjson.loads(_NO_KEY))
        return None

    def _process_response(
        self, conn: ServerConnection, request: Request, response: Response
    ) -> None:
        rec = self._pending.get(conn)
        if rec is not None:
            rec.status = response.status_code
            if response.status_code != 101:
                del self._pending[conn]
                self._counts["refused"] += 1
                self._notify()

    def _http(self, conn: ServerConnection, method: str, query: str) -> Response:
        """The listen-key API: POST creates, PUT extends, DELETE removes."""
        key = parse_qs(query).get("listenKey", [None])[0]
        if key is None and len(self._keys) == 1:
            key = next(iter(self._keys))  # futures style: one key per account, no parameter
        body: dict[str, Any] = {}
        status = 200
        if method == "POST":
            body = {"listenKey": self._new_key()}
        elif method in ("PUT", "DELETE"):
            if key is None or key not in self._keys:
                status, body = 400, orjson.loads(_NO_KEY)
            elif method == "PUT":
                self._arm_key(key)
            else:
                self._drop_key(key)
        else:
            status, body = 405, {"code": -1, "msg": f"method {method} not allowed"}
        return _json_response(conn, status, body)

    # ---------------------------------------------------------- connection

    async def _handler(self, ws: ServerConnection) -> None:
        rec = self._pending.pop(ws, None)
        if rec is None:
            logger.error("FeedServer: connection opened without a handshake record")
            return
        rec.opened_at = time.monotonic()
        self._counts["accepted"] += 1
        live = _Live(ws, rec, self._queue_size)
        if self._drop_left > 0:
            self._drop_left -= 1
            self._count("accept_then_drop")
            ws.transport.abort()
            rec.closed_at, rec.close_code = time.monotonic(), 1006
            self._notify()
            return
        with self._lock:
            self._live[rec.id] = live
        live.writer = writer = asyncio.create_task(self._writer(live))
        spec = self._feed_spec
        if spec is not None and not spec.broadcast and rec.listen_key is None:
            live.feed = self._spawn(self._run_feed(spec, live), feed=True)
        self._signal_changed()
        self._notify()
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
            with self._lock:
                self._live.pop(rec.id, None)
            for task in (live.feed, writer):
                if task is not None:
                    task.cancel()
            while not live.queue.empty():  # let flushes waiting on this queue end
                live.queue.get_nowait()
                live.queue.task_done()
            self._signal_changed()
            self._notify()
            await asyncio.wait([writer])

    async def _writer(self, live: _Live) -> None:
        ws, queue, rec = live.ws, live.queue, live.rec
        try:
            while True:
                data, text = await queue.get()
                try:
                    if not (rec.silent or rec.half_open):
                        await ws.send(data, text=text)
                        rec.sent += 1
                        self._counts["frames_sent"] += 1
                finally:
                    queue.task_done()
        except ConnectionClosed:
            return  # the handler records how the connection ended

    def _on_message(self, live: _Live, raw: str | bytes) -> None:
        msg: Any
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = raw
        with self._lock:
            live.rec.messages.append(msg)
            self._client_messages.append(msg)
        if isinstance(msg, dict):
            reply = self._answer(live, msg)
            if reply is not None:
                self._enqueue(live, encode(reply))
        self._notify()

    def _answer(self, live: _Live, msg: dict[str, Any]) -> dict[str, Any] | None:
        method, params, subs = msg.get("method"), msg.get("params"), live.rec.subscriptions
        result: Any = None
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list):
            topics = {t for t in params if isinstance(t, str)}
            if method == "SUBSCRIBE":
                subs |= topics
            else:
                subs -= topics
            live.topics = {normalize_topic(t) for t in subs}
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(subs)
        elif "id" in msg:
            result = params
        else:
            return None
        return {"result": result, "id": msg.get("id")}

    def _enqueue(self, live: _Live, frame: Frame) -> bool:
        if live.muted:
            return False
        if live.queue.full():
            live.rec.dropped += 1
            self._counts["dropped"] += 1
            return False
        live.queue.put_nowait(frame)
        return True

    def _targets(self, conn: int | None) -> list[_Live]:
        if conn is None:
            return list(self._live.values())
        if not 1 <= conn <= len(self._records):
            raise LookupError(f"no connection #{conn}")
        live = self._live.get(conn)
        return [] if live is None else [live]

    # ---------------------------------------------------------------- feed

    def _feed_targets(self) -> list[_Live]:
        return [lv for lv in self._live.values() if lv.rec.listen_key is None and not lv.muted]

    async def _wait_targets(self, n: int) -> None:
        while len(self._feed_targets()) < n:
            await self._changed.wait()

    def _start_feed(self, spec: FeedSpec) -> None:
        self._stop_feed()
        self._feed_spec = spec
        if spec.broadcast:
            self._spawn(self._run_feed(spec, None), feed=True)
            return
        for live in self._live.values():
            if live.rec.listen_key is None:
                live.feed = self._spawn(self._run_feed(spec, live), feed=True)

    def _stop_feed(self) -> None:
        self._feed_spec = None
        for task in list(self._feed_tasks):
            task.cancel()

    async def _run_feed(self, spec: FeedSpec, only: _Live | None) -> None:
        if only is None:
            gen = self._gen
            await self._wait_targets(spec.min_clients)
        else:
            gen = FeedGenerator(self._symbols, self._kinds, self._seed + only.rec.id)
        loop, rng, fast = asyncio.get_running_loop(), self._rng, spec.rate is None
        produced, start = 0, loop.time()
        targets: list[_Live] = []
        while spec.count is None or produced < spec.count:
            targets = [only] if only is not None else self._feed_targets()
            if fast and not targets:
                await self._wait_targets(1)
                continue
            n = spec.batch if spec.count is None else min(spec.batch, spec.count - produced)
            now_ms = int(time.time() * 1000)
            for _ in range(n):
                if spec.garbage_ratio and rng.random() < spec.garbage_ratio:
                    junk = garbage_frame(rng, "text" if rng.random() < 0.5 else "binary")
                    for live in targets:
                        if await self._put(live, junk, fast):
                            live.rec.garbage += 1
                            self._counts["garbage_sent"] += 1
                data, topic = gen.next(now_ms)
                frame = (data, True)
                for live in targets:
                    if self._require_subscribe and topic not in live.topics:
                        continue
                    if await self._put(live, frame, fast):
                        live.rec.last_seq = gen.seq
            produced += n
            self._counts["feed_messages"] += n
            if spec.rate is None:
                await asyncio.sleep(0)  # let the writers run between batches
            else:
                await asyncio.sleep(max(0.0, start + produced / spec.rate - loop.time()))
        await self._flush(targets)

    async def _put(self, live: _Live, frame: Frame, wait: bool) -> bool:
        if wait and not live.muted and live.queue.full():
            await live.queue.put(frame)  # as fast as the socket allows: backpressure
            return True
        return self._enqueue(live, frame)

    async def _flush(self, lives: list[_Live]) -> None:
        """Wait (up to 2 s) until what the feed queued has been written."""
        joins = [asyncio.ensure_future(lv.queue.join()) for lv in lives if not lv.muted]
        if not joins:
            return
        try:
            await asyncio.wait(joins, timeout=2.0)
        finally:
            for join in joins:
                join.cancel()
            await asyncio.wait(joins)

    def _send_one(self, frame: Frame, conn: int | None) -> int:
        lives = self._targets(conn) if conn is not None else list(self._live.values())[-1:]
        if not lives:
            raise LookupError(
                "no open connection" if conn is None else f"connection #{conn} is closed"
            )
        self._enqueue(lives[0], frame)
        return lives[0].rec.id

    # --------------------------------------------------------------- keys

    def _new_key(self) -> str:
        key = secrets.token_hex(32)
        self._keys[key] = None
        self._arm_key(key)
        return key

    def _arm_key(self, key: str) -> None:
        self._drop_key(key)
        loop = asyncio.get_running_loop()
        self._keys[key] = (
            None if self._ttl is None else loop.call_later(self._ttl, self._expire, key)
        )

    def _drop_key(self, key: str) -> bool:
        if key not in self._keys:
            return False
        handle = self._keys.pop(key)
        if handle is not None:
            handle.cancel()
        return True

    def _expire(self, key: str | None) -> int:
        if key is None:
            return sum(self._expire(k) for k in list(self._keys))
        if not self._drop_key(key):
            return 0
        frame = encode({"e": "listenKeyExpired", "E": int(time.time() * 1000), "listenKey": key})
        lives = [lv for lv in self._live.values() if lv.rec.listen_key == key]
        for live in lives:
            self._enqueue(live, frame)
        if self._close_after_expiry is not None and lives:
            reason = "listenKey expired"
            for live in lives:
                self._spawn(
                    self._later(self._close_after_expiry, self._close_one, live, 1000, reason)
                )
        return 1

    # -------------------------------------------------------------- faults

    def _close_one(self, live: _Live, code: int, reason: str) -> None:
        self._spawn(self._close_after_flush(live, code, reason))

    async def _close_after_flush(self, live: _Live, code: int, reason: str) -> None:
        with contextlib.suppress(TimeoutError):  # a client that does not read is closed anyway
            async with asyncio.timeout(1.0):
                await live.queue.join()
        await live.ws.close(code, reason)

    def _count(self, name: str, lives: list[_Live] | None = None) -> int:
        n = 1 if lives is None else len(lives)
        with self._lock:  # stats() copies the counter from another thread
            self._faults[name] += n
        self._notify()  # a waiter may be waiting on this very count
        return n

    def _do_close(self, conn: int | None, code: int = 1000, reason: str = "") -> int:
        lives = self._targets(conn)
        for live in lives:
            self._close_one(live, code, reason)
        return self._count("close", lives)

    def _do_drop(self, conn: int | None) -> int:
        lives = self._targets(conn)
        for live in lives:
            live.ws.transport.abort()
        return self._count("drop", lives)

    def _do_silence(self, conn: int | None, seconds: float | None = None) -> int:
        lives = self._targets(conn)
        for live in lives:
            live.rec.silent = True
            if seconds is not None:
                self._spawn(self._later(seconds, self._unmute, live))
        self._signal_changed()
        return self._count("silence", lives)

    def _do_half_open(self, conn: int | None, seconds: float | None = None) -> int:
        lives = self._targets(conn)
        for live in lives:
            live.ws.transport.pause_reading()
            live.rec.half_open = True
            if seconds is not None:
                self._spawn(self._later(seconds, live.ws.transport.abort))
        self._signal_changed()
        return self._count("half_open", lives)

    def _unmute(self, live: _Live) -> bool:
        if not (live.rec.silent or live.rec.half_open):
            return False
        if live.rec.half_open:
            live.ws.transport.resume_reading()
        live.rec.silent = live.rec.half_open = False
        self._signal_changed()
        return True

    def _do_resume(self, conn: int | None) -> int:
        return sum(self._unmute(live) for live in self._targets(conn))

    def _do_garbage(self, conn: int | None, kind: str = "text", size: int = 2**20 + 1) -> int:
        frame = garbage_frame(self._rng, kind, size)
        lives = [lv for lv in self._targets(conn) if self._enqueue(lv, frame)]
        for live in lives:
            live.rec.garbage += 1
        self._counts["garbage_sent"] += len(lives)
        return self._count("garbage", lives)

    def _arm_refuse(
        self, count: float = 1, status: int = 503, retry_after: float | None = None
    ) -> None:
        self._refuse = (count, status, retry_after)

    def _arm_delay(self, seconds: float = 1.0, count: float = 1) -> None:
        self._delay = (count, seconds)

    def _arm_drop(self, count: float = 1) -> None:
        self._drop_left = count

    # ----------------------------------------------------------- schedules

    def _add_schedule(
        self,
        names: tuple[str, ...],
        every: float,
        jitter: float,
        count: int | None,
        target: int | str,
        options: dict[str, Any],
    ) -> int:
        if isinstance(target, int):
            self._targets(target)  # raises LookupError for an id never seen
        sid = next(self._schedule_ids)
        task = self._spawn(self._run_schedule(names, every, jitter, count, target, options))
        with self._lock:
            self._schedules[sid] = task
        task.add_done_callback(lambda _: self._forget_schedule(sid))
        return sid

    def _forget_schedule(self, sid: int) -> None:
        with self._lock:
            self._schedules.pop(sid, None)
        self._notify()

    def _cancel_schedules(self, sid: int | None) -> None:
        with self._lock:
            tasks = list(self._schedules.values()) if sid is None else [self._schedules.get(sid)]
        for task in tasks:
            if task is not None:
                task.cancel()

    async def _run_schedule(
        self,
        names: tuple[str, ...],
        every: float,
        jitter: float,
        count: int | None,
        target: int | str,
        options: dict[str, Any],
    ) -> None:
        rng, done = self._rng, 0
        while count is None or done < count:
            await asyncio.sleep(max(0.0, every + rng.uniform(-jitter, jitter)))
            name = rng.choice(names)
            opts = {k: v for k, v in options.items() if k in FAULTS[name]}
            if name not in _CONN_FAULTS:
                arm: dict[str, Callable[..., None]] = {
                    "refuse": self._arm_refuse,
                    "delay_handshake": self._arm_delay,
                }
                arm.get(name, self._arm_drop)(**opts)
            else:
                if target == "random" and not self._live:
                    continue
                conn = rng.choice(list(self._live)) if target == "random" else target
                do: dict[str, Callable[..., int]] = {
                    "close": self._do_close,
                    "drop": self._do_drop,
                    "silence": self._do_silence,
                    "half_open": self._do_half_open,
                    "garbage": self._do_garbage,
                }
                do[name](None if conn == "all" else conn, **opts)
            done += 1
