"""Thread isolation: run a multiplexer on its own event loop in a daemon thread.

The websocket (handshakes, pings, reading, rotation) lives on a private event
loop in a thread named ``wsmux-<host>``, so a caller that blocks for seconds,
or a busy main event loop, never delays it. Other threads reach that loop
through :class:`~._loop_thread.LoopThread` (an anyio blocking portal):

* :class:`ThreadStream` is a stream read with a blocking ``for`` loop (or
  ``async for`` from another event loop, without blocking that loop). Each
  trip to the multiplexer's loop takes every message already buffered, so a
  reader that keeps up pays one cross-thread hop per burst, not per message.
* plain handlers run in a thread of their own each, so a slow one delays
  nobody; coroutine handlers, and ``inline=True`` ones, run on the loop.
* ``send``, ``request``, ``subscribe``, ``unsubscribe``, ``stats`` block the
  calling thread only.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio

from .._exceptions import MultiplexerClosed, NotConnected
from .._log import log, redact_url
from ..fanout import handler_name as _name
from ..fanout import is_async_callable as _is_async
from ..fanout._handlers import decorator
from ..fanout._match import Filters
from ..fanout._stream import Key, Overflow
from ._handler_thread import HandlerThreads
from ._loop_thread import LoopThread
from ._thread_stream import ThreadStream

if TYPE_CHECKING:
    from .._mux import Multiplexer, MultiplexerStats

__all__ = ["MuxThread", "ThreadStream", "run_in_thread"]

_names = itertools.count(1)


def _where(mux: Multiplexer) -> str:
    return "a custom _create_ws" if mux.url is None else redact_url(mux.url)


def _host(mux: Multiplexer) -> str:
    return "custom" if mux.url is None else redact_url(mux.url).partition("://")[2]


class MuxThread:
    """A multiplexer running on its own event loop in a daemon thread.

    Made by :func:`run_in_thread`. Every method may be called from any other
    thread; blocking ones raise RuntimeError when called from the
    multiplexer's own thread (an inline or async handler), where they would
    deadlock. Leave it with ``with`` or :meth:`stop`: no handler is called
    after that returns.

    Attributes:
        mux: The multiplexer. Touch it only from its own thread (through
            :meth:`call`); this object's methods do that for you.
        name: The loop thread's name.
    """

    def __init__(
        self, mux: Multiplexer, *, backend: str = "asyncio", name: str | None = None
    ) -> None:
        self.mux = mux
        self.name = name or f"wsmux-{_host(mux)}-{next(_names)}"
        self._connected = threading.Event()  # connected, or failed, or stopped
        self._bridge = LoopThread(
            self._main, name=self.name, backend=backend, on_done=self._connected.set
        )
        self._error: BaseException | None = None
        self._error_raised = False
        self._loop_handlers: set[Callable[..., Any]] = set()  # inline or async
        self._threads = HandlerThreads()

    def __repr__(self) -> str:
        state = self.mux.state if self.running else "stopped"
        return f"<MuxThread {self.name} {state}>"

    # -- the loop ------------------------------------------------------------

    def _start(self) -> None:
        self._bridge.start()

    async def _main(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_connected)
            try:
                await self.mux.run()
            except Exception as exc:
                self._error = exc
            finally:
                self._connected.set()
                tg.cancel_scope.cancel()

    async def _watch_connected(self) -> None:
        # Only success is signalled here: a failure is signalled by _main once
        # the error is recorded, so that run_in_thread sees it.
        with contextlib.suppress(MultiplexerClosed):
            await self.mux.wait_connected()
            self._connected.set()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the multiplexer's loop and return its result.

        A coroutine function is awaited there; this thread blocks meanwhile.

        Args:
            fn: A function or coroutine function.
            *args: Its arguments.

        Returns:
            What ``fn`` returned.

        Raises:
            MultiplexerClosed: The thread has stopped.
            RuntimeError: Called from the multiplexer's own thread.
            Exception: What ``fn`` raised.
        """
        return self._bridge.call(fn, *args)

    # -- state ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the thread runs the multiplexer."""
        return self._bridge.running

    @property
    def state(self) -> str:
        """The multiplexer's state (see ``Multiplexer.state``)."""
        return self.mux.state

    @property
    def error(self) -> BaseException | None:
        """The error the multiplexer died of, if it did."""
        return self._error or self._bridge.failure

    @property
    def topics(self) -> list[str]:
        """The topics subscribed to."""
        return self._bridge.run_sync(lambda: self.mux.topics)

    def stats(self) -> MultiplexerStats:
        """Return a snapshot of the multiplexer's counters.

        Plain handlers run here in threads of their own: their errors are
        added to ``handler_errors``.

        Returns:
            The counters, taken on the multiplexer's loop.
        """
        stats = self._bridge.run_sync(self.mux.stats)
        extra = self._threads.errors
        return stats._replace(handler_errors=stats.handler_errors + extra) if extra else stats

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until a connection is open.

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Raises:
            NotConnected: Not connected within ``timeout``.
            MultiplexerClosed: The multiplexer stopped or failed.
        """
        self.call(self.mux.wait_connected, timeout)

    # -- streams and handlers ------------------------------------------------

    def stream_filter(
        self,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        gaps: Literal["raise", "ignore"] = "ignore",
        topics: Iterable[str] = (),
        name: str | None = None,
        timeout: float | None = None,
        key: Key | None = None,
    ) -> ThreadStream:
        """Open a stream of the messages the filter selects, readable from this thread.

        Args:
            filters: As for ``Multiplexer.stream_filter``.
            maxsize: The most messages buffered for this stream.
            overflow: ``"lag"``, ``"drop_oldest"``, ``"drop_newest"``, ``"block"``
                or ``"conflate"`` (with ``key``).
            gaps: ``"raise"`` to get ConnectionGap at an unplanned reconnect.
            topics: Topics this stream needs (subscribed while it is open).
            name: A label for the stream's repr.
            timeout: Default seconds each read waits before TimeoutError.
            key: The conflation key (``overflow="conflate"`` only), as for
                ``Multiplexer.stream_filter``.

        Returns:
            The stream, already receiving.

        Raises:
            TypeError: The filter is malformed.
            ValueError: An option is out of range.
        """
        stream = self._bridge.run_sync(
            lambda: self.mux.stream_filter(
                filters,
                maxsize=maxsize,
                overflow=overflow,
                gaps=gaps,
                topics=topics,
                name=name,
                key=key,
            )
        )
        return ThreadStream(self, stream, timeout)

    def listen(
        self,
        cls: type | tuple[type, ...],
        filters: Filters = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> ThreadStream:
        """Open a stream of parsed messages that are instances of ``cls``.

        Args:
            cls: A class or tuple of classes.
            filters: Further filters, matched by attribute.
            timeout: Default seconds each read waits before TimeoutError.
            **options: As for :meth:`stream_filter`.

        Returns:
            The stream.

        Raises:
            TypeError: ``cls`` is not a class or tuple of classes.
        """
        stream = self._bridge.run_sync(lambda: self.mux.listen(cls, filters, **options))
        return ThreadStream(self, stream, timeout)

    def add_handler(
        self,
        fn: Callable[[Any], object],
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        inline: bool = False,
        key: Key | None = None,
    ) -> None:
        """Call ``fn(msg)`` for each message the filter selects.

        A plain function runs in a thread of its own (named ``wsmux-handler-*``),
        fed by its own stream: it may block or be slow without delaying the
        connection or other consumers. With ``inline=True`` it runs on the
        multiplexer's loop instead, and must be quick and thread-safe. A
        coroutine function runs on the multiplexer's loop in its own task.
        Exceptions are logged and counted in ``stats().handler_errors``.

        Args:
            fn: The handler.
            filters: As for :meth:`stream_filter`.
            maxsize: Buffer size (not for inline handlers).
            overflow: Overflow policy (not for inline handlers).
            inline: Run a plain function on the multiplexer's loop.
            key: The conflation key (``overflow="conflate"``; not for inline
                handlers).

        Raises:
            TypeError: ``fn`` is not callable or the filter is malformed.
            ValueError: ``fn`` is already a handler.
        """
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        if fn in self._loop_handlers or fn in self._threads:
            raise ValueError(f"{fn!r} is already a handler")

        if inline or _is_async(fn):
            self._bridge.run_sync(
                lambda: self.mux.add_handler(
                    fn, filters, maxsize=maxsize, overflow=overflow, key=key
                )
            )
            self._loop_handlers.add(fn)
            return
        stream = self.stream_filter(
            filters, maxsize=maxsize, overflow=overflow, name=_name(fn), key=key
        )
        self._threads.add(fn, stream)

    def remove_handler(self, fn: Callable[..., Any]) -> None:
        """Stop calling a handler; its thread ends once its current call returns.

        What its thread had buffered is dropped. Called from another thread,
        this waits for that call; from the handler's own thread, it does not.

        Args:
            fn: A handler added before.

        Raises:
            KeyError: ``fn`` is not a handler.
        """
        if fn in self._loop_handlers:
            self._loop_handlers.discard(fn)
            self._bridge.run_sync(self.mux.remove_handler, fn)
        elif fn in self._threads:
            self._threads.remove(fn)
        else:
            raise KeyError(f"{fn!r} is not a handler")

    def on(
        self, filters: Filters = None, **options: Any
    ) -> Callable[[Callable[[Any], object]], Callable[[Any], object]]:
        """Decorator form of :meth:`add_handler`.

        Args:
            filters: As for :meth:`stream_filter`.
            **options: As for :meth:`add_handler`.

        Returns:
            A decorator that adds the function and returns it unchanged.
        """
        return decorator(self.add_handler, filters, options)

    # -- sending -------------------------------------------------------------

    def send(self, msg: Any, *, timeout: float | None = None) -> None:
        """Send a message on the live connection (blocks this thread only).

        Args:
            msg: dict/list (JSON text), str or bytes.
            timeout: Seconds to wait for an open connection.

        Raises:
            NotConnected: No connection was open in time.
            MultiplexerClosed: The multiplexer has stopped.
            TypeError: The message cannot be encoded.
        """
        self.call(lambda: self.mux.send(msg, timeout=timeout))

    def request(self, msg: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send a request and return the reply carrying its id.

        Args:
            msg: The request (a dict).
            timeout: Seconds to wait for the reply.

        Returns:
            The reply.

        Raises:
            RequestTimeout: No reply in time.
            NotConnected: No connection was open in time.
            MultiplexerClosed: The multiplexer has stopped.
        """
        return self.call(lambda: self.mux.request(msg, timeout=timeout))

    def subscribe(self, *topics: str) -> None:
        """Subscribe to topics while running; they are replayed on reconnect.

        Args:
            *topics: Topic names.

        Raises:
            TypeError: A topic is not a non-empty str.
            NotConnected: The message could not be sent in time.
            MultiplexerClosed: The multiplexer has stopped.
        """
        self.call(self.mux.subscribe, *topics)

    def unsubscribe(self, *topics: str) -> None:
        """Unsubscribe from topics while running.

        Args:
            *topics: Topic names; unknown ones are ignored.

        Raises:
            TypeError: A topic is not a non-empty str.
            MultiplexerClosed: The multiplexer has stopped.
        """
        self.call(self.mux.unsubscribe, *topics)

    # -- stopping ------------------------------------------------------------

    def stop(self, timeout: float | None = 30.0) -> None:
        """Exit the multiplexer, end every stream, and join the thread(s).

        Plain handlers are stopped first: what their threads have buffered
        is dropped and each finishes at most the call in progress. Once this
        returns, no handler is called again. Idempotent. Called from the
        multiplexer's own thread or a handler thread, it starts all that and
        returns without waiting for itself.

        Args:
            timeout: Seconds to wait for the threads to end.

        Raises:
            TimeoutError: A thread did not end in time.
            Exception: The error the multiplexer died of (once).
        """
        in_handler = self._threads.stop_all()
        if not self._bridge.start_soon(self.mux.exit):
            log.debug("%s: loop already stopping", self.name)
        if not (in_handler or self._bridge.is_current()):
            self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the threads end (after :meth:`stop`, or by themselves on failure).

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Raises:
            TimeoutError: A thread is still running after ``timeout``.
            RuntimeError: Called from the multiplexer's own thread.
            Exception: The error the multiplexer died of (once).
        """
        self._bridge.check_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._bridge.join(timeout):
            raise TimeoutError(f"{self.name} did not stop within {timeout}s")
        self._threads.join_all(deadline)
        error = self.error
        if error is not None and not self._error_raised:
            self._error_raised = True
            raise error

    def __enter__(self) -> MuxThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._error_raised = True  # do not mask the exception in flight
        self.stop()


def run_in_thread(
    mux: Multiplexer,
    *,
    backend: Literal["asyncio", "trio"] = "asyncio",
    wait: bool = True,
    timeout: float | None = None,
    name: str | None = None,
) -> MuxThread:
    """Start a multiplexer on its own event loop in a daemon thread.

    Use it as ``with run_in_thread(mux) as t:``; the multiplexer stops when the
    block ends (Ctrl-C included). Streams and handlers may be added at once:
    the thread's loop is running when this returns.

    Args:
        mux: A multiplexer that was not started.
        backend: The thread's event loop: ``"asyncio"`` or ``"trio"``.
        wait: Return only once the first connection is open.
        timeout: With ``wait``, seconds to wait for it (None: as long as
            it takes, through retries).
        name: The thread's name (default ``wsmux-<host>-<n>``).

    Returns:
        The running thread's handle.

    Raises:
        RuntimeError: ``mux`` was already started.
        FatalConnectError: With ``wait``, connecting failed for good.
        RetriesExhausted: With ``wait``, ``max_attempts`` attempts failed.
        NotConnected: With ``wait``, no connection within ``timeout``.
    """
    if mux.state != "idle":
        raise RuntimeError(f"{mux!r} was already started")
    handle = MuxThread(mux, backend=backend, name=name)
    handle._start()
    if not wait:
        return handle
    try:
        if not handle._connected.wait(timeout):
            raise NotConnected(f"no connection to {_where(mux)} within {timeout}s")
    except BaseException:
        handle._error_raised = True
        handle.stop()
        raise
    if handle.error is not None:
        handle.stop()  # raises the error
    return handle
