"""Thread isolation: run a multiplexer on its own event loop in a daemon thread.

The websocket (handshakes, pings, reading, rotation) lives on a private event
loop in a thread named ``wsmux-<host>``, so a caller that blocks for seconds,
or a busy main event loop, never delays it. Other threads talk to it through
an anyio :class:`~anyio.from_thread.BlockingPortal`:

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

import itertools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.lowlevel
from anyio.from_thread import BlockingPortal

from .._exceptions import MultiplexerClosed, NotConnected
from .._log import log
from ..fanout._hub import _is_async, _name
from ..fanout._match import Filters
from ..fanout._stream import Overflow
from ._thread_stream import ThreadStream, _HandlerThread

if TYPE_CHECKING:
    from .._mux import Multiplexer, MultiplexerStats

__all__ = ["MuxThread", "ThreadStream", "run_in_thread"]

T = TypeVar("T")

_names = itertools.count(1)


class MuxThread:
    """A multiplexer running on its own event loop in a daemon thread.

    Made by :func:`run_in_thread`. Every method may be called from any other
    thread; blocking ones raise RuntimeError when called from the
    multiplexer's own thread (an inline or async handler), where they would
    deadlock. Leave it with ``with`` or :meth:`stop`.

    Attributes:
        mux: The multiplexer. Touch it only from its own thread (through
            :meth:`call`); this object's methods do that for you.
    """

    def __init__(
        self, mux: Multiplexer, *, backend: str = "asyncio", name: str | None = None
    ) -> None:
        self.mux = mux
        self._backend = backend
        host = mux._redacted.partition("://")[2] or "custom"
        self.name = name or f"wsmux-{host}-{next(_names)}"
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._portal: BlockingPortal | None = None
        self._portal_up = threading.Event()
        self._connected = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._error_raised = False
        self._stop_requested = False
        self._handlers: dict[Callable[..., Any], _HandlerThread | None] = {}
        self._handler_ids = itertools.count(1)

    def __repr__(self) -> str:
        state = self.mux.state if self.running else "stopped"
        return f"<MuxThread {self.name} {state}>"

    # -- the thread ----------------------------------------------------------

    def _start(self) -> None:
        self._thread.start()
        self._portal_up.wait()

    def _thread_main(self) -> None:
        try:
            anyio.run(self._main, backend=self._backend)
        except BaseException as exc:  # anyio.run itself failed (bad backend, ...)
            self._error = exc
            log.error("%s: event loop failed: %r", self.name, exc)
        finally:
            self._done.set()
            self._portal_up.set()
            self._connected.set()

    async def _main(self) -> None:
        mux = self.mux
        async with BlockingPortal() as portal:
            self._portal = portal
            self._portal_up.set()
            try:
                async with mux:
                    self._connected.set()
                    while not mux._exiting and mux.state not in ("closed", "failed"):
                        await mux._wait_state_change(float("inf"))
            except Exception as exc:
                self._error = exc
            finally:
                self._connected.set()

    async def _exit_mux(self) -> None:
        mux = self.mux
        if mux.state == "idle":  # _main is entering it: exit() would race with that
            await mux._wait_state_change(float("inf"))
        await mux.exit()

    def _portal_or_none(self) -> BlockingPortal | None:
        return None if self._done.is_set() else self._portal

    def _check_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a blocking MuxThread method was called from the multiplexer's own thread;"
                " use the multiplexer's async methods there"
            )

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        """Start ``fn(*args)`` on the loop; None once the loop has stopped.

        The portal stops only after the multiplexer has fully exited, so
        when this returns None nothing else touches the multiplexer.

        Raises:
            RuntimeError: Called from the multiplexer's own thread.
        """
        self._check_thread()
        portal = self._portal_or_none()
        if portal is None:
            return None
        try:
            return portal.start_task_soon(fn, *args)
        except RuntimeError:
            return None

    @staticmethod
    def _wait(future: Future[T]) -> T:
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in this thread: stop the loop side too
            raise

    def _submit_wait(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop and wait; False when the loop has stopped."""
        future = self._spawn(fn, *args)
        if future is None:
            return False
        self._wait(future)
        return True

    def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a quick sync function on the loop, or here once it stopped."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future = self._spawn(fn, *args)
        if future is None:
            return fn(*args)
        result: T = self._wait(future)
        return result

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
        future = self._spawn(fn, *args)
        if future is None:
            raise MultiplexerClosed("the multiplexer's thread has stopped")
        return self._wait(future)

    # -- state ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the thread runs the multiplexer."""
        return not self._done.is_set()

    @property
    def state(self) -> str:
        """The multiplexer's state (see ``Multiplexer.state``)."""
        return self.mux.state

    @property
    def error(self) -> BaseException | None:
        """The error the multiplexer died of, if it did."""
        return self._error

    @property
    def topics(self) -> list[str]:
        """The topics subscribed to."""
        return self._run_sync(lambda: self.mux.topics)

    def stats(self) -> MultiplexerStats:
        """Return a snapshot of the multiplexer's counters.

        Plain handlers run here in threads of their own: their errors are
        added to ``handler_errors``.

        Returns:
            The counters, taken on the multiplexer's loop.
        """
        stats = self._run_sync(self.mux.stats)
        extra = sum(h.errors for h in list(self._handlers.values()) if h is not None)
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
    ) -> ThreadStream:
        """Open a stream of the messages the filter selects, readable from this thread.

        Args:
            filters: As for ``Multiplexer.stream_filter``.
            maxsize: The most messages buffered for this stream.
            overflow: ``"lag"``, ``"drop_oldest"``, ``"drop_newest"`` or ``"block"``.
            gaps: ``"raise"`` to get ConnectionGap at an unplanned reconnect.
            topics: Topics this stream needs (subscribed while it is open).
            name: A label for the stream's repr.
            timeout: Default seconds each read waits before TimeoutError.

        Returns:
            The stream, already receiving.

        Raises:
            TypeError: The filter is malformed.
            ValueError: An option is out of range.
        """
        stream = self._run_sync(
            lambda: self.mux.stream_filter(
                filters, maxsize=maxsize, overflow=overflow, gaps=gaps, topics=topics, name=name
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
        stream = self._run_sync(lambda: self.mux.listen(cls, filters, **options))
        return ThreadStream(self, stream, timeout)

    def add_handler(
        self,
        fn: Callable[[Any], object],
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        inline: bool = False,
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

        Raises:
            TypeError: ``fn`` is not callable or the filter is malformed.
            ValueError: ``fn`` is already a handler.
        """
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        if fn in self._handlers:
            raise ValueError(f"{fn!r} is already a handler")

        if inline or _is_async(fn):
            self._run_sync(
                lambda: self.mux.add_handler(fn, filters, maxsize=maxsize, overflow=overflow)
            )
            self._handlers[fn] = None
            return
        stream = self.stream_filter(filters, maxsize=maxsize, overflow=overflow, name=_name(fn))
        name = f"wsmux-handler-{next(self._handler_ids)}-{_name(fn)}"
        handler = _HandlerThread(fn, stream, name)
        self._handlers[fn] = handler
        handler.thread.start()

    def remove_handler(self, fn: Callable[..., Any]) -> None:
        """Stop calling a handler; its thread ends once its current call returns.

        Args:
            fn: A handler added before.

        Raises:
            KeyError: ``fn`` is not a handler.
        """
        if fn not in self._handlers:
            raise KeyError(f"{fn!r} is not a handler")
        handler = self._handlers.pop(fn)
        if handler is None:
            self._run_sync(self.mux.remove_handler, fn)
            return
        handler.stream.close()
        if handler.thread is not threading.current_thread():
            handler.thread.join()

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

        def decorate(fn: Callable[[Any], object]) -> Callable[[Any], object]:
            self.add_handler(fn, filters, **options)
            return fn

        return decorate

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

        Idempotent. Called from the multiplexer's own thread or a handler
        thread, it starts the shutdown and returns without waiting for itself.

        Args:
            timeout: Seconds to wait for the thread to end.

        Raises:
            TimeoutError: The thread did not end in time.
            Exception: The error the multiplexer died of (once).
        """
        self._stop_requested = True
        current = threading.current_thread()
        if current is self._thread:
            if not self.mux._exiting:
                self.mux._in_background(self.mux.exit)
            return
        portal = self._portal_or_none()
        if portal is not None:
            try:
                portal.start_task_soon(self._exit_mux)
            except RuntimeError:
                log.debug("%s: loop already stopping", self.name)
        in_handler = any(
            h is not None and h.thread is current for h in list(self._handlers.values())
        )
        if in_handler:
            return
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends (after :meth:`stop`, or by itself on failure).

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Raises:
            TimeoutError: The thread is still running after ``timeout``.
            Exception: The error the multiplexer died of (once).
        """
        self._check_thread()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.name} did not stop within {timeout}s")
        for handler in list(self._handlers.values()):
            if handler is not None and handler.thread is not threading.current_thread():
                handler.thread.join(timeout)
        if self._error is not None and not self._error_raised:
            self._error_raised = True
            raise self._error

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
            raise NotConnected(f"no connection to {mux._redacted} within {timeout}s")
    except BaseException:
        handle._error_raised = True
        handle.stop()
        raise
    if handle._error is not None:
        handle.stop()  # raises the error
    return handle
